"""Payment service providers: signature checks and webhook payloads -> balance operations."""
