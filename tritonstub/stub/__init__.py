"""The stub executable (see stub.py); keep this file free of imports."""
