namespace mukai::server {}
