"""What an operator sees of a running process: Prometheus metrics (`metrics`) and
structured JSON logs with the execution they are about (`logs`).

Nothing here imports the rest of executor: any layer, runtimes/ included, may report to it.
"""
