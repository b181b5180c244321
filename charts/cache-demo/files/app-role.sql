-- The app's own PostgreSQL role on Kubernetes: it reads the catalogue and writes products, nothing else (no DDL,
-- no writes to categories or reviews; deleting a product deletes its reviews through the foreign key's ON DELETE
-- CASCADE, which PostgreSQL runs with the table owner's rights). Loaded right after init.sql, with the password
-- as a psql variable:  psql -v app_password=... -f app-role.sql
CREATE ROLE cache_demo_app LOGIN PASSWORD :'app_password';
GRANT USAGE ON SCHEMA public TO cache_demo_app;
GRANT SELECT ON categories, products, reviews TO cache_demo_app;
GRANT INSERT, UPDATE, DELETE ON products TO cache_demo_app;
