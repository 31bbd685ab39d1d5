"""The worker process: the Worker, the data converter, interceptors."""
