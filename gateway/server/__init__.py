"""The gateway's HTTP plumbing: server process, protocol and front, long-polls, per-process threads."""
