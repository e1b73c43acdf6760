"""Storage interfaces (typing.Protocol) and their implementations."""
