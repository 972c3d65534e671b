"""Sample quality: the evaluation during training, the metrics, the real data's reference statistics, the feature
networks behind them (and training one), and scoring a generator outside training."""
