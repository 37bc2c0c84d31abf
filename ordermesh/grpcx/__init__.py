"""gRPC plumbing shared by every service: serving, health, reflection, errors."""
