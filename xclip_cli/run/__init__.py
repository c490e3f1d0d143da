"""Where jobs run besides this process: a Ray cluster, a server and its client."""
