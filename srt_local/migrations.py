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
        "m003_i10ollama_thinking",
        """
        -- What a thinking model thought before it answered (Ollama's message.thinking), and
        -- about how many tokens that took; NULL when it did not think.
        ALTER TABLE teacher_calls ADD COLUMN thinking VARCHAR;
        ALTER TABLE teacher_calls ADD COLUMN thinking_tokens INTEGER;
        """,
    ),
    (
        "m004_i14judge_tables",
        """
        -- One row per request to a judge, kept like teacher_calls (provenance, raw reply, outcome).
        CREATE SEQUENCE judge_call_ids START 1;
        CREATE TABLE judge_calls (
            call_id            BIGINT PRIMARY KEY DEFAULT nextval('judge_call_ids'),
            run_id             INTEGER NOT NULL,
            sample_id          BIGINT NOT NULL,    -- the selected sample
            against            VARCHAR NOT NULL,   -- original | random
            other_sample_id    BIGINT NOT NULL,    -- the sample whose original pair was the rival
            selected_side      VARCHAR NOT NULL,   -- A | B: where the selected pair was shown
            judge_key          VARCHAR NOT NULL,
            seed               INTEGER NOT NULL,   -- the random control's seed (0 for original)
            attempt            INTEGER NOT NULL,
            judge_name         VARCHAR NOT NULL,
            backend            VARCHAR NOT NULL,
            model              VARCHAR NOT NULL,
            model_digest       VARCHAR,
            host               VARCHAR,
            options            JSON,
            prompt_version     VARCHAR NOT NULL,
            output_mode        VARCHAR NOT NULL,
            messages           JSON NOT NULL,
            raw_reply          VARCHAR,
            outcome            VARCHAR NOT NULL,   -- ok | parse_failed | empty | error
            verdict            VARCHAR,            -- A | B | tie, as the judge wrote it
            reason             VARCHAR,
            prompt_tokens      INTEGER,
            prompt_eval_count  INTEGER,
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

        -- One row per comparison in one order; a stored row is never asked again.
        CREATE TABLE judgements (
            run_id          INTEGER NOT NULL,
            sample_id       BIGINT NOT NULL,
            against         VARCHAR NOT NULL,
            judge_key       VARCHAR NOT NULL,
            seed            INTEGER NOT NULL,
            selected_side   VARCHAR NOT NULL,   -- A | B
            other_sample_id BIGINT NOT NULL,
            selected_chars  INTEGER NOT NULL,   -- length of the selected pair's response
            other_chars     INTEGER NOT NULL,   -- length of the rival's response
            verdict         VARCHAR,            -- A | B | tie; NULL when no reply parsed
            outcome         VARCHAR NOT NULL,   -- win | tie | loss (for the selected pair) | failed
            reason          VARCHAR,
            call_id         BIGINT,             -- the last judge call made for it
            judged_at       TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (run_id, sample_id, against, judge_key, seed, selected_side)
        );

        -- Review overrides made by `srt judge --apply`, apart from a person's (decisions.override).
        CREATE TABLE judge_overrides (
            run_id      INTEGER NOT NULL,
            sample_id   BIGINT NOT NULL,
            override    VARCHAR NOT NULL,       -- reject
            judge_key   VARCHAR NOT NULL,
            against     VARCHAR NOT NULL,
            seed        INTEGER NOT NULL,
            reason      VARCHAR NOT NULL,
            applied_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (run_id, sample_id)
        );

        -- "Kept", still defined once, now with the judge's overrides: a person's override wins over
        -- the judge's, which wins over the decision rule. `selection` reads this view.
        CREATE OR REPLACE VIEW kept_samples AS
        SELECT d.run_id, d.sample_id
        FROM decisions d
        LEFT JOIN judge_overrides j ON j.run_id = d.run_id AND j.sample_id = d.sample_id
        WHERE coalesce(d.override = 'accept', j.override = 'accept', d.emitted);
        """,
    ),
    (
        # Who runs a run: a run left `running` by a process that is gone (kill -9, a lost machine)
        # is shown as interrupted, and paused when the store is next opened for a run.
        "m005_i9cli_run_owner",
        """
        ALTER TABLE runs ADD COLUMN owner_pid INTEGER;
        ALTER TABLE runs ADD COLUMN owner_host VARCHAR;
        """,
    ),
    (
        "m006_i12gpu_score_path",
        # The scoring path (host or device reduction) joins the scores' key, so scores of the two
        # never mix. DuckDB cannot change a primary key in place: a new table takes the rows.
        """
        CREATE TABLE scores_by_path (
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
            score_path      VARCHAR NOT NULL DEFAULT 'host',
            PRIMARY KEY (student_sha256, template, max_tokens, score_path, pair_hash)
        );
        INSERT INTO scores_by_path (
            student_sha256, template, max_tokens, pair_hash, student_name, status, detail,
            loss_y_given_x, loss_y, loss_x_given_y, loss_x, n_y_tokens, n_x_tokens,
            ifd_ppl, rifd_ppl, ifd_loss, rifd_loss, scored_at, score_path
        )
        SELECT student_sha256, template, max_tokens, pair_hash, student_name, status, detail,
               loss_y_given_x, loss_y, loss_x_given_y, loss_x, n_y_tokens, n_x_tokens,
               ifd_ppl, rifd_ppl, ifd_loss, rifd_loss, scored_at, 'host'
        FROM scores;
        DROP TABLE scores;
        ALTER TABLE scores_by_path RENAME TO scores;
        """,
    ),
    (
        "m007_i11fidelity_profile",
        """
        -- The profile a run follows (default | paper): part of what names a run, since the two
        -- decide unscorable samples and top-k cuts differently. Earlier runs were `default`.
        ALTER TABLE runs ADD COLUMN profile VARCHAR DEFAULT 'default';
        UPDATE runs SET profile = 'default' WHERE profile IS NULL;
        """,
    ),
]
