"""ANN -> SNN conversion of pre-trained transformers (issue 10)."""
