"""The store's schema as an append-only list of migrations, recorded in `_migrations`.

Never edit a migration that has shipped: append a new one.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_initial",
        """
        CREATE SEQUENCE dataset_ids START 1;
        CREATE TABLE datasets (
            dataset_id      INTEGER PRIMARY KEY DEFAULT nextval('dataset_ids'),
            name            VARCHAR NOT NULL UNIQUE,
            source_path     VARCHAR NOT NULL,
            source_sha256   VARCHAR NOT NULL,
            format          VARCHAR NOT NULL,
            n_records       INTEGER NOT NULL,
            n_imported      INTEGER NOT NULL,
            n_duplicates    INTEGER NOT NULL,
            n_rejected      INTEGER NOT NULL,
            n_turns_skipped INTEGER NOT NULL,
            imported_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
        );

        CREATE SEQUENCE sample_ids START 1;
        CREATE TABLE samples (
            sample_id    BIGINT PRIMARY KEY DEFAULT nextval('sample_ids'),
            dataset_id   INTEGER NOT NULL,
            position     INTEGER NOT NULL,      -- 0-based order of first appearance in the file
            location     VARCHAR NOT NULL,      -- 'line 12' or 'index 3' of its first appearance
            instruction  VARCHAR NOT NULL,
            input        VARCHAR NOT NULL,
            output       VARCHAR NOT NULL,
            pair_hash    VARCHAR NOT NULL,
            n_copies     INTEGER NOT NULL DEFAULT 1,
            UNIQUE (dataset_id, pair_hash),
            UNIQUE (dataset_id, position)
        );

        CREATE TABLE import_errors (
            dataset_id  INTEGER NOT NULL,
            location    VARCHAR NOT NULL,
            field       VARCHAR,
            reason      VARCHAR NOT NULL,
            record      VARCHAR
        );

        CREATE SEQUENCE call_ids START 1;
        CREATE TABLE teacher_calls (
            call_id            BIGINT PRIMARY KEY DEFAULT nextval('call_ids'),
            sample_id          BIGINT,
            stage              VARCHAR NOT NULL,   -- instruction | response
            source_kind        VARCHAR NOT NULL,   -- the version reflected: ori | Q
            teacher_key        VARCHAR NOT NULL,   -- names the teacher set-up that made the reflection
            attempt            INTEGER NOT NULL,
            teacher_name       VARCHAR NOT NULL,
            backend            VARCHAR NOT NULL,
            model              VARCHAR NOT NULL,
            model_digest       VARCHAR,
            host               VARCHAR,
            options            JSON,
            prompt_version     VARCHAR NOT NULL,
            output_mode        VARCHAR NOT NULL,
            messages           JSON NOT NULL,
            raw_reply          VARCHAR,
            outcome            VARCHAR NOT NULL,   -- ok | parse_failed | empty | echo | refused | error
            parsed             JSON,
            prompt_tokens      INTEGER,            -- our own count of the prompt
            prompt_eval_count  INTEGER,            -- the server's count
            prompt_truncated   BOOLEAN,
            eval_count         INTEGER,
            total_duration_ms  DOUBLE,
            load_duration_ms   DOUBLE,
            prompt_eval_duration_ms DOUBLE,
            eval_duration_ms   DOUBLE,
            error_kind         VARCHAR,
            error_message      VARCHAR,
            started_at         TIMESTAMP,
            finished_at        TIMESTAMP
        );

        CREATE TABLE versions (
            sample_id    BIGINT NOT NULL,
            teacher_key  VARCHAR NOT NULL,   -- '' for ori
            kind         VARCHAR NOT NULL,   -- ori | Q | A | QA
            instruction  VARCHAR NOT NULL,
            input        VARCHAR NOT NULL,
            output       VARCHAR NOT NULL,
            pair_hash    VARCHAR NOT NULL,
            critique     VARCHAR,
            call_id      BIGINT,             -- the teacher call that wrote it (NULL for ori)
            created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (sample_id, teacher_key, kind)
        );

        CREATE TABLE reflection_failures (
            sample_id    BIGINT NOT NULL,
            teacher_key  VARCHAR NOT NULL,
            kind         VARCHAR NOT NULL,   -- the version that could not be made: Q | A | QA
            outcome      VARCHAR NOT NULL,
            last_call_id BIGINT,
            recorded_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (sample_id, teacher_key, kind)
        );

        CREATE TABLE scores (
            student_sha256  VARCHAR NOT NULL,
            template        VARCHAR NOT NULL,
            max_tokens      INTEGER NOT NULL,
            pair_hash       VARCHAR NOT NULL,
            student_name    VARCHAR NOT NULL,
            status          VARCHAR NOT NULL,
            detail          VARCHAR,
            loss_y_given_x  DOUBLE,
            loss_y          DOUBLE,
            loss_x_given_y  DOUBLE,
            loss_x          DOUBLE,
            n_y_tokens      INTEGER,
            n_x_tokens      INTEGER,
            ifd_ppl         DOUBLE,
            rifd_ppl        DOUBLE,
            ifd_loss        DOUBLE,
            rifd_loss       DOUBLE,
            scored_at       TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (student_sha256, template, max_tokens, pair_hash)
        );

        CREATE SEQUENCE run_ids START 1;
        CREATE TABLE runs (
            run_id          INTEGER PRIMARY KEY DEFAULT nextval('run_ids'),
            dataset_id      INTEGER NOT NULL,
            teacher_name    VARCHAR NOT NULL,
            teacher_key     VARCHAR NOT NULL,
            student_name    VARCHAR NOT NULL,
            student_sha256  VARCHAR NOT NULL,
            template        VARCHAR NOT NULL,
            max_tokens      INTEGER NOT NULL,
            sample_limit    INTEGER,
            emit_unreflected BOOLEAN NOT NULL,
            config          JSON NOT NULL,
            status          VARCHAR NOT NULL,   -- running | paused | done | incomplete | failed | cancelled
            error           VARCHAR,
            created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
            updated_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
            finished_at     TIMESTAMP
        );

        CREATE TABLE decisions (
            run_id        INTEGER NOT NULL,
            sample_id     BIGINT NOT NULL,
            branch        VARCHAR NOT NULL,   -- QA | Q | A | ori
            final_kind    VARCHAR NOT NULL,   -- the version the decision stands on
            ifd_ori       DOUBLE,
            ifd_q         DOUBLE,
            rifd_base     DOUBLE,             -- r-IFD of Q or ori, whichever branch was taken
            rifd_reflected DOUBLE,            -- r-IFD of QA or A
            ifd_final     DOUBLE,
            rifd_final    DOUBLE,
            ifd_margin    DOUBLE,             -- IFD(Q) - IFD(ori)
            rifd_margin   DOUBLE,             -- r-IFD(reflected) - r-IFD(base)
            passes        BOOLEAN NOT NULL,   -- IFD < 1 and r-IFD < 1 on the final version
            emitted       BOOLEAN NOT NULL,
            reason        VARCHAR NOT NULL,
            override      VARCHAR,            -- accept | reject, set by a person
            decided_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (run_id, sample_id)
        );

        CREATE VIEW selection AS
        SELECT d.run_id, d.sample_id, s.position, d.branch, d.final_kind,
               v.instruction, v.input, v.output, d.ifd_final AS ifd_ppl, d.rifd_final AS rifd_ppl,
               d.override
        FROM decisions d
        JOIN runs r USING (run_id)
        JOIN samples s USING (sample_id)
        JOIN versions v ON v.sample_id = d.sample_id AND v.kind = d.final_kind
             AND v.teacher_key = CASE WHEN d.final_kind = 'ori' THEN '' ELSE r.teacher_key END
        WHERE coalesce(d.override = 'accept', d.emitted);
        """,
    ),
    (
        "m002_a8engine_kept",
        """
        -- "Kept", defined once: emitted by the decision rule or accepted by a person, and not
        -- rejected by a person. The run summary, `srt status`, Browse and export all read it.
        CREATE VIEW kept_samples AS
        SELECT d.run_id, d.sample_id
        FROM decisions d
        WHERE coalesce(d.override = 'accept', d.emitted);

        CREATE OR REPLACE VIEW selection AS
        SELECT d.run_id, d.sample_id, s.position, d.branch, d.final_kind,
               v.instruction, v.input, v.output, d.ifd_final AS ifd_ppl, d.rifd_final AS rifd_ppl,
               d.override
        FROM kept_samples k
        JOIN decisions d USING (run_id, sample_id)
        JOIN runs r USING (run_id)
        JOIN samples s USING (sample_id)
        JOIN versions v ON v.sample_id = d.sample_id AND v.kind = d.final_kind
             AND v.teacher_key = CASE WHEN d.final_kind = 'ori' THEN '' ELSE r.teacher_key END;
        """,
    ),
    (
        "m003_i11fidelity_profile",
        """
        -- The profile a run follows (default | paper): part of what names a run, since the two
        -- decide unscorable samples and top-k cuts differently. Earlier runs were `default`.
        ALTER TABLE runs ADD COLUMN profile VARCHAR DEFAULT 'default';
        UPDATE runs SET profile = 'default' WHERE profile IS NULL;
        """,
    ),
]
