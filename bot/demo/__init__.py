"""`atlas demo`: Atlas's main job, start to finish, on a throwaway PostgreSQL of its own."""
