"""tritonstub's own ``triton_python_backend_utils``, used when argv[6] has no such file."""
