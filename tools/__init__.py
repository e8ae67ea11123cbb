"""Project tooling: Terraform inventory, code scan, generated docs."""
