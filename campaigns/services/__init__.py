"""Campaign use cases, one module per sub-domain (launch, sending, triggers, API triggers, ...)."""
