"""Scoring: the loss terms (`losses`), what the config asks to minimise
(`objective`), metrics from a global confusion matrix (`metrics`), and how
results are shown and kept: `tables`, `pictures`, `writers`."""
