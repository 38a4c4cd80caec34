"""fairsift: curate."""
