"""Domain / audience / reasoning-intensity classification: taxonomy, labelling, fastText training and prediction."""
