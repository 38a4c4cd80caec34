"""fairsift: dashboards."""
