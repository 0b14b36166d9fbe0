"""HTTP gateway: validates observations, stores them as queued and hands them to the workers."""
