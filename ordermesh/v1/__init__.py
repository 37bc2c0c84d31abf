"""Generated from protos/ordermesh/v1 by `make proto`. Do not edit."""
