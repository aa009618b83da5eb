-- The studio's schema for the whole lifecycle: seeds -> generation -> judging -> pairs -> review
-- -> snapshots -> training -> comparison. Ids are text (prefix_time_random, or a content hash where
-- re-running must be idempotent). Lineage columns name the producing row (seed, run, model, template);
-- they are not FOREIGN KEYs because DuckDB refuses updates of referenced rows, and rows are updated
-- as work progresses. Free-form details go to JSON columns so later issues add fields, not tables.

-- Registry ---------------------------------------------------------------------------------
CREATE TABLE models (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    kind VARCHAR NOT NULL,               -- 'hf' (transformers folder), 'gguf', 'adapter', 'hub'
    source VARCHAR NOT NULL,             -- 'pull', 'folder', 'gguf', 'hub', 'training'
    hf_path VARCHAR,                     -- folder transformers loads (trainable copy)
    gguf_path VARCHAR,                   -- GGUF file llama.cpp serves
    adapter_path VARCHAR,                -- PEFT adapter folder
    base_model_id VARCHAR,               -- for adapters and fine-tunes: the model it came from
    training_run_id VARCHAR,             -- lineage: the run that produced it
    architecture VARCHAR,
    parameters BIGINT,
    has_chat_template BOOLEAN,
    card JSON,                           -- model card fields
    details JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE endpoints (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL UNIQUE,
    base_url VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    api_key_env VARCHAR,                 -- name of the environment variable that holds the key
    api_key_secret VARCHAR,              -- name of the entry in STUDIO_HOME/secrets.toml (never the key)
    concurrency INTEGER NOT NULL DEFAULT 8,
    timeout_s DOUBLE NOT NULL DEFAULT 60,
    max_retries INTEGER NOT NULL DEFAULT 5,
    embedded BOOLEAN NOT NULL DEFAULT false,
    details JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE prices (
    model VARCHAR PRIMARY KEY,           -- model name as the endpoint reports it; '*' is the default
    input_usd_per_mtok DOUBLE NOT NULL,
    output_usd_per_mtok DOUBLE NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- LLM calls: response cache and cost ledger -----------------------------------------------------
CREATE TABLE llm_cache (
    cache_key VARCHAR PRIMARY KEY,       -- sha256 of (model, messages, sampling params)
    model VARCHAR NOT NULL,
    request JSON NOT NULL,
    response_text VARCHAR NOT NULL,
    finish_reason VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE llm_calls (
    id VARCHAR PRIMARY KEY,
    backend VARCHAR NOT NULL,            -- 'openai', 'transformers'
    endpoint_id VARCHAR,
    model VARCHAR NOT NULL,
    job_id VARCHAR,                      -- generation / evaluation job that made the call
    stage VARCHAR,                       -- 'instructions', 'responses', 'judge', 'compare', 'try'
    cache_key VARCHAR,
    cached BOOLEAN NOT NULL DEFAULT false,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms DOUBLE,
    cost_usd DOUBLE,
    status VARCHAR NOT NULL,             -- 'ok', 'error'
    error VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Jobs: one progress format for generation, sync, training, evaluation ----------------------------
CREATE TABLE jobs (
    id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,               -- 'generation', 'review_push', 'review_pull', 'training', 'evaluation'
    name VARCHAR,
    status VARCHAR NOT NULL,             -- 'queued', 'running', 'succeeded', 'failed', 'cancelled'
    spec JSON,
    progress JSON,                       -- {stage, done, total, tokens, cost_usd, losses, eta_s, ...}
    pid INTEGER,
    host VARCHAR,
    heartbeat_at TIMESTAMPTZ,
    error VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);

-- Seeds and generation --------------------------------------------------------------------------
CREATE TABLE seed_sets (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    source VARCHAR NOT NULL,             -- 'typed', 'csv', 'jsonl', 'parquet', 'datasets'
    source_path VARCHAR,
    column_mapping JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE seeds (
    id VARCHAR PRIMARY KEY,
    seed_set_id VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    reference VARCHAR,                   -- optional reference answer (verifiable tasks)
    metadata JSON,
    content_hash VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE prompt_templates (
    id VARCHAR PRIMARY KEY,              -- content hash of (kind, text)
    name VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,               -- 'self_instruct', 'evol:deepen', 'judge:pointwise', ...
    text VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE generation_runs (
    id VARCHAR PRIMARY KEY,
    name VARCHAR,
    job_id VARCHAR,
    seed_set_id VARCHAR,
    config JSON NOT NULL,
    status VARCHAR NOT NULL,
    report JSON,                         -- preprocessing report: what each step removed and why
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    finished_at TIMESTAMPTZ
);

CREATE TABLE instructions (
    id VARCHAR PRIMARY KEY,              -- content hash of (run, seed, method, text) for idempotent resume
    run_id VARCHAR NOT NULL,
    seed_id VARCHAR,
    parent_instruction_id VARCHAR,       -- evol-instruct: the instruction it evolved from
    method VARCHAR NOT NULL,             -- 'seed', 'self_instruct', 'evol:deepen', ...
    template_id VARCHAR,
    model VARCHAR,
    text VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    status VARCHAR NOT NULL DEFAULT 'kept',   -- 'kept' or 'removed'
    removed_reason VARCHAR,
    llm_call_id VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE responses (
    id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    instruction_id VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    endpoint_id VARCHAR,
    template_id VARCHAR,
    sampling_params JSON,
    candidate_index INTEGER NOT NULL DEFAULT 0,
    text VARCHAR NOT NULL,
    finish_reason VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms DOUBLE,
    cost_usd DOUBLE,
    cache_key VARCHAR,
    status VARCHAR NOT NULL DEFAULT 'kept',
    removed_reason VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE judgments (
    id VARCHAR PRIMARY KEY,
    run_id VARCHAR,
    mode VARCHAR NOT NULL,               -- 'pointwise' or 'pairwise'
    judge_kind VARCHAR NOT NULL,         -- 'llm' or 'rubric'
    judge_model VARCHAR,                 -- model name, or the rubric's name
    template_id VARCHAR,
    response_id VARCHAR,                 -- pointwise: the judged response
    response_a_id VARCHAR,               -- pairwise: the two responses as shown
    response_b_id VARCHAR,
    order_swapped BOOLEAN,               -- pairwise: this judgment saw (B, A)
    aspect_scores JSON,                  -- {"helpfulness": 4, "honesty": 5, ...}
    overall_score DOUBLE,
    preferred VARCHAR,                   -- pairwise: 'a', 'b', 'tie'
    swap_agreement BOOLEAN,              -- pairwise: both orders agreed
    rationale VARCHAR,
    raw_output VARCHAR,
    parse_status VARCHAR NOT NULL,       -- 'ok', 'repaired', 'failed'
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd DOUBLE,
    llm_call_id VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Labeled pairs ---------------------------------------------------------------------------------
CREATE TABLE sft_pairs (
    id VARCHAR PRIMARY KEY,
    run_id VARCHAR,
    instruction_id VARCHAR,
    response_id VARCHAR,
    seed_id VARCHAR,
    prompt VARCHAR NOT NULL,
    completion VARCHAR NOT NULL,
    model VARCHAR,
    score DOUBLE,
    confidence DOUBLE,
    label_source VARCHAR NOT NULL DEFAULT 'llm',   -- 'llm', 'rubric', 'human'
    human_reviewed BOOLEAN NOT NULL DEFAULT false,
    flagged BOOLEAN NOT NULL DEFAULT false,
    metadata JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE preference_pairs (
    id VARCHAR PRIMARY KEY,
    run_id VARCHAR,
    instruction_id VARCHAR,
    seed_id VARCHAR,
    prompt VARCHAR NOT NULL,
    chosen VARCHAR NOT NULL,
    rejected VARCHAR NOT NULL,
    chosen_response_id VARCHAR,
    rejected_response_id VARCHAR,
    chosen_model VARCHAR,
    rejected_model VARCHAR,
    judge_model VARCHAR,
    chosen_score DOUBLE,
    rejected_score DOUBLE,
    score_gap DOUBLE,
    swap_agreement BOOLEAN,
    confidence DOUBLE,
    label_source VARCHAR NOT NULL DEFAULT 'llm',
    human_reviewed BOOLEAN NOT NULL DEFAULT false,
    flagged BOOLEAN NOT NULL DEFAULT false,
    chosen_length INTEGER,
    rejected_length INTEGER,
    metadata JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Human review (Argilla) -------------------------------------------------------------------------
CREATE TABLE review_rounds (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    record_kind VARCHAR NOT NULL,        -- 'preference', 'sft', 'instruction', 'comparison'
    argilla_url VARCHAR,
    argilla_dataset_id VARCHAR,
    argilla_dataset_name VARCHAR,
    workspace VARCHAR,
    min_submitted INTEGER NOT NULL DEFAULT 1,
    guidelines VARCHAR,
    filters JSON,
    settings JSON,
    status VARCHAR NOT NULL DEFAULT 'open',
    last_pulled_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE review_records (
    id VARCHAR PRIMARY KEY,              -- stable: hash of (round, record kind, record id)
    round_id VARCHAR NOT NULL,
    record_kind VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,          -- the pair / instruction it shows
    argilla_record_id VARCHAR,
    order_swapped BOOLEAN,               -- response A shown was the pair's rejected one
    priority DOUBLE,                     -- active review: lower judge confidence first
    pushed_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    final_label JSON,
    final_rule VARCHAR,
    final_source VARCHAR,                -- 'human', 'llm'
    reviewed BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE review_responses (
    id VARCHAR PRIMARY KEY,              -- stable: hash of (review record, reviewer)
    round_id VARCHAR NOT NULL,
    review_record_id VARCHAR NOT NULL,
    reviewer VARCHAR NOT NULL,
    status VARCHAR NOT NULL,             -- 'submitted', 'discarded', 'draft'
    answer JSON,                         -- {"preferred": "a", "rating_a": 4, ...}
    responded_at TIMESTAMPTZ,
    pulled_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Snapshots and training --------------------------------------------------------------------------
CREATE TABLE dataset_snapshots (
    id VARCHAR PRIMARY KEY,
    name VARCHAR,
    record_kind VARCHAR NOT NULL,        -- 'preference', 'sft', 'kto', 'prompts'
    content_hash VARCHAR NOT NULL UNIQUE,
    filters JSON,
    split_seed INTEGER,
    eval_fraction DOUBLE,
    n_train INTEGER NOT NULL,
    n_eval INTEGER NOT NULL,
    checks JSON,                         -- pre-training data checks
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE snapshot_records (
    snapshot_id VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    split VARCHAR NOT NULL,              -- 'train' or 'eval'
    position INTEGER NOT NULL,
    content_hash VARCHAR NOT NULL,
    payload JSON NOT NULL,               -- the exact content trained on (immutable copy)
    PRIMARY KEY (snapshot_id, record_id)
);

CREATE TABLE training_runs (
    id VARCHAR PRIMARY KEY,
    name VARCHAR,
    job_id VARCHAR,
    recipe VARCHAR NOT NULL,             -- 'sft', 'reward', 'ppo', 'dpo', 'rlhf', ...
    stage VARCHAR NOT NULL,
    stage_index INTEGER NOT NULL DEFAULT 0,
    parent_run_id VARCHAR,               -- the previous stage of the recipe
    snapshot_id VARCHAR,
    base_model_id VARCHAR,
    output_model_id VARCHAR,
    spec JSON NOT NULL,
    status VARCHAR NOT NULL,
    device VARCHAR,
    error VARCHAR,
    final_metrics JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);

CREATE TABLE training_metrics (
    run_id VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    epoch DOUBLE,
    name VARCHAR NOT NULL,
    value DOUBLE,
    logged_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (run_id, step, name)
);

CREATE TABLE checkpoints (
    id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    path VARCHAR NOT NULL,
    metrics JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Comparison and votes --------------------------------------------------------------------------
CREATE TABLE comparisons (
    id VARCHAR PRIMARY KEY,
    name VARCHAR,
    job_id VARCHAR,
    prompt_source VARCHAR NOT NULL,      -- 'snapshot_eval', 'generation_run', 'upload'
    prompt_source_id VARCHAR,
    model_ids JSON NOT NULL,
    sampling_params JSON,
    training_run_id VARCHAR,             -- set when it is a run's automatic evaluation
    status VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE comparison_prompts (
    id VARCHAR PRIMARY KEY,
    comparison_id VARCHAR NOT NULL,
    prompt VARCHAR NOT NULL,
    reference VARCHAR,
    source_record_id VARCHAR,
    metadata JSON
);

CREATE TABLE comparison_outputs (
    id VARCHAR PRIMARY KEY,
    comparison_id VARCHAR NOT NULL,
    prompt_id VARCHAR NOT NULL,
    model_id VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    truncated BOOLEAN NOT NULL DEFAULT false,
    completion_tokens INTEGER,
    reward_score DOUBLE,
    cache_key VARCHAR,
    sampling_params JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE votes (
    id VARCHAR PRIMARY KEY,              -- stable: hash of (prompt, models, voter) so one vote per voter
    comparison_id VARCHAR NOT NULL,
    prompt_id VARCHAR NOT NULL,
    model_a VARCHAR NOT NULL,            -- as shown in slot A
    model_b VARCHAR NOT NULL,
    output_a_id VARCHAR,
    output_b_id VARCHAR,
    winner VARCHAR NOT NULL,             -- 'a', 'b', 'tie', 'both_bad'
    voter_kind VARCHAR NOT NULL,         -- 'human', 'llm', 'rubric'
    voter VARCHAR NOT NULL,
    order_swapped BOOLEAN,
    rationale VARCHAR,
    metadata JSON,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
