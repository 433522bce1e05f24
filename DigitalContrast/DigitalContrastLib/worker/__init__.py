"""The background worker process and its clients: the line protocol, the client (torch-free) and the server that runs jobs."""
