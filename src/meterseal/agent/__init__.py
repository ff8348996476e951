"""The meter-side sealing agent: legacy meter protocols read, their values sealed as readings."""
