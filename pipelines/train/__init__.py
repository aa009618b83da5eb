"""Training: run specs, algorithms (TRL + PEFT), the stage runner, outputs and scale-out export."""
