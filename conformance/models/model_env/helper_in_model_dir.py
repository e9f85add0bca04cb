"""Found through the model directory, the second entry the stub appends to sys.path."""
WHERE = "model directory"
