"""ordermesh settlement service."""
