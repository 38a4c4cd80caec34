"""fairsift: audit."""
