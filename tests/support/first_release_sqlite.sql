-- The schema the first release made with create_all (before migrations), for
-- tests/test_migrations.py: generated from its models, not to be edited.
CREATE TABLE audit_entries (
	id INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	user_email VARCHAR(254) NOT NULL, 
	user_role VARCHAR(16) NOT NULL, 
	action VARCHAR(32) NOT NULL, 
	amount NUMERIC(14, 2), 
	plan_from VARCHAR(200), 
	plan_to VARCHAR(200), 
	outcome VARCHAR(64) NOT NULL, 
	detail VARCHAR(500), 
	request_id VARCHAR(100), 
	checkout_url VARCHAR(2048), 
	nonce VARCHAR(64), 
	PRIMARY KEY (id), 
	UNIQUE (nonce)
);

CREATE INDEX ix_audit_at ON audit_entries (at);

CREATE TABLE login_failures (
	id INTEGER NOT NULL, 
	email VARCHAR(254) NOT NULL, 
	address VARCHAR(64) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_login_failures_address_at ON login_failures (address, at);

CREATE INDEX ix_login_failures_email_at ON login_failures (email, at);

CREATE TABLE users (
	id INTEGER NOT NULL, 
	email VARCHAR(254) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	password_hash VARCHAR(255) NOT NULL, 
	is_demo BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (email)
);

CREATE TABLE user_sessions (
	id VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	last_seen_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
