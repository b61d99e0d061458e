-- The code whose login made the user: a retry of that first login (its answer came too
-- late, and the same code was given back) is still the user's first, and says so.
ALTER TABLE users ADD COLUMN first_code uuid;
