"""HTTP plumbing shared by every blueprint: JSON errors, bearer auth, OpenAPI, health."""
