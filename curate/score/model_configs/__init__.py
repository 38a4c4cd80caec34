"""open_clip architecture configs that fairsift registers (the tiny test architecture); JSON files only."""
