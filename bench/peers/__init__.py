"""The systems a user would pick instead of ours, served from the same bundle and measured in the same run."""
