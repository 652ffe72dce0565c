namespace mukai::config {}
