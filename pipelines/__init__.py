"""fairsift: pipelines."""
