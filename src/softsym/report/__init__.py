"""softsym-report: MLflow runs → claims table, results table and plots."""
