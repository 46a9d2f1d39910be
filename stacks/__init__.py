"""Stacks of one environment: they translate the typed config into construct props."""
