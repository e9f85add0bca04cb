"""Found through the version directory, the first entry the stub appends to sys.path."""
WHERE = "version directory"
