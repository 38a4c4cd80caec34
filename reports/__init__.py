"""fairsift: reports."""
