-- The roles the README's Privileges section recommends, for the compose sandbox.
CREATE ROLE atlas_reader LOGIN PASSWORD 'example-reader-password';
GRANT pg_read_all_data TO atlas_reader;
-- staging: drills create scratch databases (CREATEDB); refreshes replace app_staging, its own
CREATE ROLE atlas_staging LOGIN CREATEDB PASSWORD 'example-staging-password';
CREATE DATABASE app_staging OWNER atlas_staging;
