CREATE TABLE api_token (
	id VARCHAR(16) NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	secret_sha256 VARCHAR(64) NOT NULL, 
	created_by VARCHAR(100) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	revoked_at TIMESTAMP WITH TIME ZONE, 
	last_used_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_api_token_name ON api_token (name);

CREATE TABLE audit_event (
	id SERIAL NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	actor VARCHAR(100) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	via VARCHAR(16) NOT NULL, 
	method VARCHAR(8) NOT NULL, 
	path VARCHAR(500) NOT NULL, 
	status INTEGER NOT NULL, 
	client VARCHAR(100) NOT NULL, 
	detail VARCHAR(2000) NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_audit_event_actor ON audit_event (actor);

CREATE INDEX ix_audit_event_at ON audit_event (at);

CREATE TABLE auto_action (
	incident_id VARCHAR(32) NOT NULL, 
	target VARCHAR(200) NOT NULL, 
	solution_id VARCHAR(200) NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (incident_id)
);

CREATE INDEX ix_auto_action_at ON auto_action (at);

CREATE INDEX ix_auto_action_target ON auto_action (target);

CREATE TABLE automation_pause (
	target VARCHAR(200) NOT NULL, 
	by VARCHAR(200) NOT NULL, 
	reason VARCHAR NOT NULL, 
	since TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (target)
);

CREATE TABLE autonomy (
	key VARCHAR(400) NOT NULL, 
	solution_id VARCHAR(200) NOT NULL, 
	fault VARCHAR(200) NOT NULL, 
	target_class VARCHAR(200) NOT NULL, 
	level VARCHAR(16) NOT NULL, 
	successes INTEGER NOT NULL, 
	failures INTEGER NOT NULL, 
	streak INTEGER NOT NULL, 
	reason VARCHAR NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (key)
);

CREATE TABLE autonomy_outcome (
	incident_id VARCHAR(32) NOT NULL, 
	key VARCHAR(400) NOT NULL, 
	verified BOOLEAN NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (incident_id)
);

CREATE TABLE chat_thread (
	incident_id VARCHAR(32) NOT NULL, 
	channel VARCHAR(100) NOT NULL, 
	ts VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (incident_id)
);

CREATE TABLE execution_run (
	key VARCHAR(200) NOT NULL, 
	incident_id VARCHAR(32) NOT NULL, 
	phase VARCHAR(32) NOT NULL, 
	playbook VARCHAR(300) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	rc INTEGER, 
	changed INTEGER NOT NULL, 
	started_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	ended_at TIMESTAMP WITH TIME ZONE, 
	events JSON, 
	diff JSON, 
	artifacts VARCHAR, 
	note VARCHAR NOT NULL, 
	PRIMARY KEY (key)
);

CREATE INDEX ix_execution_run_incident_id ON execution_run (incident_id);

CREATE TABLE incident (
	id VARCHAR(32) NOT NULL, 
	target VARCHAR(200) NOT NULL, 
	state VARCHAR(32) NOT NULL, 
	fault VARCHAR(200), 
	reason VARCHAR NOT NULL, 
	opened_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	findings JSON, 
	report JSON, 
	decision JSON, 
	execution JSON, 
	verification JSON, 
	plan JSON, 
	approval JSON, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_incident_state ON incident (state);

CREATE INDEX ix_incident_target ON incident (target);

CREATE TABLE outcome_outbox (
	case_id VARCHAR(64) NOT NULL, 
	incident_id VARCHAR(32) NOT NULL, 
	"case" JSON NOT NULL, 
	decision JSON NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	attempts INTEGER NOT NULL, 
	last_error VARCHAR(500) NOT NULL, 
	delivered_at TIMESTAMP WITH TIME ZONE, 
	refused BOOLEAN NOT NULL, 
	PRIMARY KEY (case_id)
);

CREATE INDEX ix_outcome_outbox_delivered_at ON outcome_outbox (delivered_at);

CREATE INDEX ix_outcome_outbox_incident_id ON outcome_outbox (incident_id);

CREATE TABLE shadow_decision (
	incident_id VARCHAR(32) NOT NULL, 
	target VARCHAR(200) NOT NULL, 
	solution_id VARCHAR(200) NOT NULL, 
	playbook VARCHAR(300) NOT NULL, 
	mode VARCHAR(16) NOT NULL, 
	reason VARCHAR NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (incident_id)
);

CREATE INDEX ix_shadow_decision_target ON shadow_decision (target);

CREATE TABLE incident_transition (
	id SERIAL NOT NULL, 
	incident_id VARCHAR(32) NOT NULL, 
	from_state VARCHAR(32), 
	to_state VARCHAR(32) NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	note VARCHAR NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(incident_id) REFERENCES incident (id)
);

CREATE INDEX ix_incident_transition_incident_id ON incident_transition (incident_id);
