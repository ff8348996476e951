"""Exchange with utility systems: readings in from CSV and Green Button ESPI, ESPI out."""
