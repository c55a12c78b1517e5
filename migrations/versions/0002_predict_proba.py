"""predict_proba: score an image from a run's final weights in plain SQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

from signdb.db import roles

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The weight vector is unnested WITH ORDINALITY and each element is paired with
# its pixel through get_byte, so one set-based pass does the whole dot product:
# no per-pixel plpgsql loop, no join against a generated pixel series.
#
# Python twin (signdb.ml): x = pixels / 255 (row-major h, w, c);
#   logreg   p = sigmoid(x . w + b), the probability of classes[2] (the positive class);
#   softmax  x is standardised per image when hyperparams.standardize is true,
#            (x - mean) / sqrt(var_pop + 1e-6) as losses.standardize_per_image does,
#            and p is the largest softmax probability (that of the predicted label),
#            the same value evaluate stores in predictions.probability.
# Standardisation is folded into the sums: (sum x_i W_ij - mean * sum W_ij) / sd.
PREDICT_PROBA = r"""
CREATE FUNCTION signdb.predict_proba(run_id bigint, image_id bigint)
RETURNS double precision
LANGUAGE plpgsql STABLE PARALLEL SAFE
-- A generic plan (which plpgsql switches to after five calls) evaluates the
-- weight and pixel parameters row by row and is ~15x slower than a custom one.
SET plan_cache_mode = force_custom_plan
AS $fn$
DECLARE
    v_model text;
    v_hyper jsonb;
    v_step integer;
    v_pixels bytea;
    v_weight real[];
    v_bias real[];
    v_shape integer[];
    v_n integer;
    v_k integer;
    v_mean double precision;
    v_sd double precision;
    v_z double precision;
    v_p double precision;
BEGIN
    SELECT r.model, r.hyperparams INTO v_model, v_hyper
    FROM signdb.runs r WHERE r.id = predict_proba.run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no run with id %', predict_proba.run_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT run_id FROM signdb.run_summary lists the runs';
    END IF;
    IF v_model NOT IN ('logreg', 'softmax') THEN
        RAISE EXCEPTION 'predict_proba scores logreg and softmax runs only; run % is a % model',
            predict_proba.run_id, v_model
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'use signdb evaluate and read signdb.predictions for other models';
    END IF;
    SELECT max(w.step) INTO v_step
    FROM signdb.weights w WHERE w.run_id = predict_proba.run_id AND w.final;
    IF v_step IS NULL THEN
        RAISE EXCEPTION 'run % has no final weights', predict_proba.run_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'only runs that finished training can be scored';
    END IF;
    SELECT w.data, w.shape INTO v_weight, v_shape FROM signdb.weights w
    WHERE w.run_id = predict_proba.run_id AND w.step = v_step AND w.tensor = 'weight';
    SELECT w.data INTO v_bias FROM signdb.weights w
    WHERE w.run_id = predict_proba.run_id AND w.step = v_step AND w.tensor = 'bias';
    SELECT i.pixels INTO v_pixels FROM signdb.images i WHERE i.id = predict_proba.image_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no image with id %', predict_proba.image_id USING ERRCODE = 'no_data_found';
    END IF;
    v_n := octet_length(v_pixels);
    IF v_n <> v_shape[1] THEN
        RAISE EXCEPTION 'image % has % pixel values but run % was trained on %',
            predict_proba.image_id, v_n, predict_proba.run_id, v_shape[1]
            USING ERRCODE = 'data_exception',
                  HINT = 'score images of the run''s own dataset';
    END IF;

    IF v_model = 'logreg' THEN
        SELECT sum(w.v::double precision * get_byte(v_pixels, (w.k - 1)::integer))
               / 255.0 + v_bias[1]
          INTO v_z
        FROM unnest(v_weight) WITH ORDINALITY AS w(v, k);
        -- The two branches keep exp() from overflowing for large |z|.
        IF v_z >= 0 THEN
            RETURN 1.0 / (1.0 + exp(-v_z));
        END IF;
        RETURN exp(v_z) / (1.0 + exp(v_z));
    END IF;

    -- softmax: weight is (d, k) row-major, so element ord-1 is W[(ord-1) / k, (ord-1) % k].
    v_k := v_shape[2];
    IF coalesce((v_hyper ->> 'standardize')::boolean, true) THEN
        SELECT avg(x), sqrt(var_pop(x) + 1e-6) INTO v_mean, v_sd
        FROM (SELECT get_byte(v_pixels, g) / 255.0::double precision AS x
              FROM generate_series(0, v_n - 1) AS g) AS px;
    ELSE
        v_mean := 0;
        v_sd := 1;
    END IF;
    WITH logits AS (
        SELECT (w.k - 1) % v_k AS j,
               (sum(w.v::double precision * get_byte(v_pixels, ((w.k - 1) / v_k)::integer))
                    / 255.0
                - v_mean * sum(w.v::double precision)) / v_sd AS z
        FROM unnest(v_weight) WITH ORDINALITY AS w(v, k)
        GROUP BY 1
    ), biased AS (
        SELECT l.z + v_bias[(l.j + 1)::integer] AS z FROM logits l
    )
    -- The largest softmax probability is 1 / sum(exp(z_j - max z)).
    SELECT 1.0 / sum(exp(b.z - m.zmax)) INTO v_p
    FROM biased b CROSS JOIN (SELECT max(z) AS zmax FROM biased) AS m;
    RETURN v_p;
END
$fn$"""

COMMENT = (
    "COMMENT ON FUNCTION signdb.predict_proba(bigint, bigint) IS "
    "'Probability of an image under a logreg or softmax run''s final weights: the positive "
    "class (classes[2]) for logreg, the predicted label for softmax; equals "
    "predictions.probability'"
)


def upgrade() -> None:
    op.execute(PREDICT_PROBA)
    op.execute(COMMENT)
    for statement in roles.grant_sql():
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS signdb.predict_proba(bigint, bigint)")
