-- The roles the README's Privileges section recommends, for the compose sandbox.
CREATE ROLE atlas_reader LOGIN PASSWORD 'example-reader-password';
GRANT pg_read_all_data TO atlas_reader;
CREATE ROLE atlas_drills LOGIN CREATEDB PASSWORD 'example-drills-password';
