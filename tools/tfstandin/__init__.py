"""Stand-in Terraform providers that serve the real providers' schemas to an offline plan."""
