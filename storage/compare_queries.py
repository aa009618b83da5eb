"""Named SQL for comparisons, their prompts, outputs and votes (used only by ``storage.compare``).

Identifiers never come from users: the insert column lists are constants here, and the only
user-chosen name in a query (a metadata slice key) is bound as a JSON path parameter.
"""

from __future__ import annotations

COMPARISON_COLUMNS = ("id", "name", "job_id", "prompt_source", "prompt_source_id", "model_ids", "sampling_params",
                      "training_run_id", "status", "created_at")
INSERT_COMPARISON = ("INSERT INTO comparisons (id, name, job_id, prompt_source, prompt_source_id, model_ids, "
                     "sampling_params, training_run_id, status) VALUES (?, ?, ?, ?, ?, ?::JSON, ?::JSON, ?, ?)")
SELECT_COMPARISON = f"SELECT {', '.join(COMPARISON_COLUMNS)} FROM comparisons WHERE id = ?"
SELECT_COMPARISONS = f"SELECT {', '.join(COMPARISON_COLUMNS)} FROM comparisons ORDER BY created_at DESC, id LIMIT ?"
SELECT_RUN_COMPARISON = (f"SELECT {', '.join(COMPARISON_COLUMNS)} FROM comparisons WHERE training_run_id = ? "
                         "ORDER BY created_at DESC, id LIMIT 1")
SET_STATUS = "UPDATE comparisons SET status = ? WHERE id = ?"
SET_JOB = "UPDATE comparisons SET job_id = ? WHERE id = ?"
SET_SPEC = "UPDATE comparisons SET sampling_params = ?::JSON WHERE id = ?"
COUNTS = """
SELECT (SELECT count(*) FROM comparison_prompts WHERE comparison_id = $id) AS prompts,
       (SELECT count(*) FROM comparison_outputs WHERE comparison_id = $id) AS outputs,
       (SELECT count(*) FROM comparison_outputs WHERE comparison_id = $id AND truncated) AS truncated,
       (SELECT count(*) FROM comparison_outputs WHERE comparison_id = $id
          AND json_extract_string(sampling_params, '$.finish_reason') = 'length') AS cut_off,
       (SELECT count(*) FROM votes WHERE comparison_id = $id AND voter_kind = 'human') AS human_votes,
       (SELECT count(*) FROM votes WHERE comparison_id = $id AND voter_kind <> 'human') AS judge_votes
"""

PROMPT_COLUMNS = ("id", "comparison_id", "prompt", "reference", "source_record_id", "metadata")
INSERT_PROMPTS = ("INSERT INTO comparison_prompts (id, comparison_id, prompt, reference, source_record_id, metadata) "
                  "SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5), unnest($6)::JSON "
                  "ON CONFLICT (id) DO NOTHING")
PROMPT_ORDER = "TRY_CAST(json_extract_string(metadata, '$._position') AS BIGINT) NULLS LAST, id"
SELECT_PROMPTS = (f"SELECT {', '.join(PROMPT_COLUMNS)} FROM comparison_prompts WHERE comparison_id = ? "
                  f"ORDER BY {PROMPT_ORDER}")
PROMPT_FILTER = """
FROM comparison_prompts p WHERE p.comparison_id = $id
  AND ($search IS NULL OR p.prompt ILIKE $search OR EXISTS (
      SELECT 1 FROM comparison_outputs o WHERE o.prompt_id = p.id AND o.text ILIKE $search))
  AND ($truncated_only = false OR EXISTS (
      SELECT 1 FROM comparison_outputs o WHERE o.prompt_id = p.id AND o.truncated))
  AND ($slice_path IS NULL OR json_extract_string(p.metadata, $slice_path) = $slice_value)
"""
SELECT_PROMPT_PAGE = (f"SELECT {', '.join('p.' + c for c in PROMPT_COLUMNS)} {PROMPT_FILTER} "
                      f"ORDER BY {PROMPT_ORDER.replace('metadata', 'p.metadata').replace(', id', ', p.id')} "
                      "LIMIT $limit OFFSET $offset")
COUNT_PROMPT_PAGE = f"SELECT count(*) {PROMPT_FILTER}"

OUTPUT_COLUMNS = ("id", "comparison_id", "prompt_id", "model_id", "text", "truncated", "completion_tokens",
                  "reward_score", "cache_key", "sampling_params")
INSERT_OUTPUTS = (f"INSERT INTO comparison_outputs ({', '.join(OUTPUT_COLUMNS)}) SELECT unnest($1), unnest($2), "
                  "unnest($3), unnest($4), unnest($5), unnest($6), unnest($7), unnest($8), unnest($9), "
                  "unnest($10)::JSON ON CONFLICT (id) DO NOTHING")
SELECT_OUTPUTS = f"SELECT {', '.join(OUTPUT_COLUMNS)} FROM comparison_outputs WHERE comparison_id = ?"
SELECT_OUTPUTS_OF_PROMPTS = (f"SELECT {', '.join(OUTPUT_COLUMNS)} FROM comparison_outputs "
                             "WHERE list_contains(?, prompt_id)")
SELECT_OUTPUT = f"SELECT {', '.join(OUTPUT_COLUMNS)} FROM comparison_outputs WHERE id = ?"
SELECT_CACHED = ("SELECT cache_key, any_value(text), any_value(truncated), any_value(completion_tokens) "
                 "FROM comparison_outputs WHERE list_contains(?, cache_key) GROUP BY cache_key")
SET_REWARD = "UPDATE comparison_outputs SET reward_score = ? WHERE id = ?"

VOTE_COLUMNS = ("id", "comparison_id", "prompt_id", "model_a", "model_b", "output_a_id", "output_b_id", "winner",
                "voter_kind", "voter", "order_swapped", "rationale", "metadata")
_VOTE_VALUES = ", ".join(f"unnest(${i})" + ("::JSON" if c == "metadata" else "")
                         for i, c in enumerate(VOTE_COLUMNS, start=1))
INSERT_VOTES_KEEP = f"INSERT INTO votes ({', '.join(VOTE_COLUMNS)}) SELECT {_VOTE_VALUES} ON CONFLICT (id) DO NOTHING"
INSERT_VOTES_REPLACE = (f"INSERT INTO votes ({', '.join(VOTE_COLUMNS)}) SELECT {_VOTE_VALUES} ON CONFLICT (id) DO "
                        "UPDATE SET model_a = excluded.model_a, model_b = excluded.model_b, "
                        "output_a_id = excluded.output_a_id, output_b_id = excluded.output_b_id, "
                        "winner = excluded.winner, order_swapped = excluded.order_swapped, "
                        "rationale = excluded.rationale, metadata = excluded.metadata")
SELECT_VOTE = f"SELECT {', '.join(VOTE_COLUMNS)} FROM votes WHERE id = ?"
SELECT_VOTED_PAIRS = "SELECT prompt_id, model_a, model_b FROM votes WHERE comparison_id = ? AND voter = ?"
SELECT_PAIR_VOTE_COUNTS = ("SELECT prompt_id, least(model_a, model_b), greatest(model_a, model_b), count(*) "
                           "FROM votes WHERE comparison_id = ? AND voter_kind = 'human' GROUP BY ALL")
# The leaderboard's one read: columns as numpy arrays (fetchnumpy), 100k rows in tens of milliseconds.
VOTE_TABLE = """
SELECT v.model_a, v.model_b, v.winner, v.voter_kind, v.voter, v.prompt_id,
       json_extract_string(p.metadata, $slice_path) AS slice,
       coalesce(len(string_split(trim(oa.text), ' ')), 0) AS words_a,
       coalesce(len(string_split(trim(ob.text), ' ')), 0) AS words_b
FROM votes v JOIN comparison_prompts p ON p.id = v.prompt_id
LEFT JOIN comparison_outputs oa ON oa.id = v.output_a_id
LEFT JOIN comparison_outputs ob ON ob.id = v.output_b_id
WHERE ($comparison_id IS NULL OR v.comparison_id = $comparison_id)
  AND ($voter_kind IS NULL OR v.voter_kind = $voter_kind)
  AND ($voter IS NULL OR v.voter = $voter)
"""
JUDGE_ORDER_COUNTS = """
SELECT voter, count(*) FILTER (WHERE s = 'a') AS first, count(*) FILTER (WHERE s = 'b') AS second,
       count(*) FILTER (WHERE s = 'tie') AS ties
FROM (SELECT voter, unnest(CAST(json_extract(metadata, '$.shown') AS VARCHAR[])) AS s
      FROM votes WHERE comparison_id = ? AND voter_kind = 'llm')
GROUP BY voter ORDER BY voter
"""
SELECT_MODEL_BY_ID = "SELECT name FROM models WHERE id = ?"
SELECT_MODEL_RUN = "SELECT training_run_id FROM models WHERE name = ?"
SELECT_TRAINING_RUN = ("SELECT id, name, status, snapshot_id, base_model_id, output_model_id "
                       "FROM training_runs WHERE id = ?")
SELECT_SNAPSHOT_PAYLOADS = ("SELECT record_id, payload FROM snapshot_records WHERE snapshot_id = ? AND split = ? "
                            "ORDER BY position, record_id")
SELECT_SNAPSHOT = "SELECT id, name, record_kind FROM dataset_snapshots WHERE id = ?"

# Votes pulled from a review round that are gone from Argilla now (the keep-list is the current set).
DELETE_STALE_ROUND_VOTES = """
DELETE FROM votes WHERE json_extract_string(metadata, '$.review_round_id') = $1 AND NOT list_contains($2, id)
"""
