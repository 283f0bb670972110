"""SQL helpers the segment compiler calls, and the triggers that keep the event rollup current.

The rollup (segments_eventdailycount) is maintained by statement-level triggers on profiles_event,
so profiles never has to know that segments exists and every writer keeps it current:

- INSERT: one grouped upsert per statement (count += n, first/last widened). The intake inserts
  with ON CONFLICT (workspace_id, message_id) DO NOTHING; its transition table holds only the rows
  actually inserted, so a resent event is not counted twice.
- DELETE and UPDATE (profile merges move events with UPDATE ... SET profile_id): the affected
  (profile, name, day) groups are recomputed from the events themselves, which keeps first/last
  exact. These paths are rare (merges, erasure), so exactness beats cleverness there.
"""

from django.db import migrations

SEMVER_KEY = r"""
-- A comparable key for a version string: [major, minor, patch, build, 1 unless a pre-release].
-- NULL when the string is not a version. Mirrored by segments.definition.semver_key.
CREATE FUNCTION segments_semver_key(version text) RETURNS integer[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN t.m IS NULL THEN NULL ELSE ARRAY[
    t.m[1]::integer, coalesce(t.m[2]::integer, 0), coalesce(t.m[3]::integer, 0), coalesce(t.m[4]::integer, 0),
    CASE WHEN t.m[5] IS NULL THEN 1 ELSE 0 END] END
  FROM regexp_match(
    version,
    '^[vV]?([0-9]{1,9})(?:\.([0-9]{1,9}))?(?:\.([0-9]{1,9}))?(?:\.([0-9]{1,9}))?(-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$'
  ) AS t(m)
$$;

-- A custom attribute's time (an ISO 8601 string in JSON) as timestamptz; NULL when it is not one.
-- Times without an offset are read in the session time zone, which Django sets to UTC.
CREATE FUNCTION segments_parse_time(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE AS $$
BEGIN
  IF value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?[ ]?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?$' THEN
    RETURN NULL;
  END IF;
  BEGIN
    RETURN value::timestamptz;
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_time_zone_displacement_value THEN
    RETURN NULL;
  END;
END
$$;
"""

# The value of a JSON custom attribute or event property, read as each kind of comparison expects,
# or NULL when it is not one. Plain SQL expressions, so the planner inlines them.
JSON_READERS = r"""
CREATE FUNCTION segments_json_text(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) IN ('string', 'number', 'boolean') THEN v #>> '{}' END
$$;
-- Numbers, and strings that spell a plain decimal number ("42", "-3.5"): apps send both.
CREATE FUNCTION segments_json_number(v jsonb) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v)
    WHEN 'number' THEN (v #>> '{}')::numeric
    WHEN 'string' THEN CASE WHEN (v #>> '{}') ~ '^[ ]*[-+]?[0-9]{1,30}([.][0-9]{1,30})?[ ]*$'
                            THEN btrim(v #>> '{}')::numeric END
  END
$$;
CREATE FUNCTION segments_json_boolean(v jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) = 'boolean' THEN (v #>> '{}')::boolean END
$$;
CREATE FUNCTION segments_json_time(v jsonb) RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN segments_parse_time(v #>> '{}') END
$$;
CREATE FUNCTION segments_json_array(v jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(v) = 'array' THEN v END
$$;
"""

DROP_JSON_READERS = """
DROP FUNCTION IF EXISTS segments_json_text(jsonb);
DROP FUNCTION IF EXISTS segments_json_number(jsonb);
DROP FUNCTION IF EXISTS segments_json_boolean(jsonb);
DROP FUNCTION IF EXISTS segments_json_time(jsonb);
DROP FUNCTION IF EXISTS segments_json_array(jsonb);
"""

DROP_HELPERS = """
DROP FUNCTION IF EXISTS segments_parse_time(text);
DROP FUNCTION IF EXISTS segments_semver_key(text);
"""

TRIGGERS = r"""
CREATE FUNCTION segments_event_rollup_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO segments_eventdailycount AS r (workspace_id, profile_id, name, day, count, first_at, last_at)
  SELECT workspace_id, profile_id, name, ("timestamp" AT TIME ZONE 'UTC')::date,
         count(*), min("timestamp"), max("timestamp")
    FROM segments_new_events
   GROUP BY 1, 2, 3, 4
   -- A fixed order, so two statements upserting the same keys cannot deadlock.
   ORDER BY 2, 3, 4
  ON CONFLICT (profile_id, name, day) DO UPDATE
     SET count = r.count + EXCLUDED.count,
         first_at = LEAST(r.first_at, EXCLUDED.first_at),
         last_at = GREATEST(r.last_at, EXCLUDED.last_at);
  RETURN NULL;
END
$$;

-- Recompute the rollup rows of these (profile, name, day) keys from the events as they now stand.
CREATE FUNCTION segments_event_rollup_refresh(profile_ids bigint[], names text[], days date[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF profile_ids IS NULL THEN
    RETURN;
  END IF;
  -- Hold off concurrent inserts of these people's events (their foreign-key check takes KEY SHARE
  -- on the profile row) until this transaction ends, and wait for any in flight: the recount below
  -- then cannot miss or double an increment made by another transaction.
  PERFORM 1 FROM profiles_profile WHERE id = ANY(profile_ids) ORDER BY id FOR UPDATE;
  DELETE FROM segments_eventdailycount r
   USING unnest(profile_ids, names, days) AS k(profile_id, name, day)
   WHERE r.profile_id = k.profile_id AND r.name = k.name AND r.day = k.day;
  INSERT INTO segments_eventdailycount AS r (workspace_id, profile_id, name, day, count, first_at, last_at)
  SELECT e.workspace_id, e.profile_id, e.name, k.day, count(*), min(e."timestamp"), max(e."timestamp")
    FROM (SELECT DISTINCT * FROM unnest(profile_ids, names, days)) AS k(profile_id, name, day)
    JOIN profiles_event e
      ON e.profile_id = k.profile_id AND e.name = k.name
     AND e."timestamp" >= (k.day::timestamp AT TIME ZONE 'UTC')
     AND e."timestamp" < ((k.day + 1)::timestamp AT TIME ZONE 'UTC')
   GROUP BY e.workspace_id, e.profile_id, e.name, k.day
   ORDER BY 2, 3, 4
  ON CONFLICT (profile_id, name, day) DO UPDATE
     SET count = EXCLUDED.count, first_at = EXCLUDED.first_at, last_at = EXCLUDED.last_at;
END
$$;

CREATE FUNCTION segments_event_rollup_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  profile_ids bigint[];
  names text[];
  days date[];
BEGIN
  SELECT array_agg(k.profile_id), array_agg(k.name), array_agg(k.day) INTO profile_ids, names, days
    FROM (SELECT DISTINCT profile_id, name, ("timestamp" AT TIME ZONE 'UTC')::date AS day
            FROM segments_old_events) AS k;
  PERFORM segments_event_rollup_refresh(profile_ids, names, days);
  RETURN NULL;
END
$$;

CREATE FUNCTION segments_event_rollup_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  profile_ids bigint[];
  names text[];
  days date[];
BEGIN
  -- Only rows whose profile, name or time changed move between rollup rows; an update of
  -- properties or context costs one join of the transition tables and nothing more.
  WITH changed AS (
    SELECT o.profile_id AS old_profile_id, o.name AS old_name, o."timestamp" AS old_ts,
           n.profile_id AS new_profile_id, n.name AS new_name, n."timestamp" AS new_ts
      FROM segments_old_events o JOIN segments_new_events n ON n.id = o.id
     WHERE (o.profile_id, o.name, o."timestamp") IS DISTINCT FROM (n.profile_id, n.name, n."timestamp")
  )
  SELECT array_agg(k.profile_id), array_agg(k.name), array_agg(k.day) INTO profile_ids, names, days
    FROM (SELECT old_profile_id AS profile_id, old_name AS name, (old_ts AT TIME ZONE 'UTC')::date AS day FROM changed
          UNION
          SELECT new_profile_id, new_name, (new_ts AT TIME ZONE 'UTC')::date FROM changed) AS k;
  PERFORM segments_event_rollup_refresh(profile_ids, names, days);
  RETURN NULL;
END
$$;

-- PostgreSQL allows transition tables only on single-event triggers, hence three.
CREATE TRIGGER segments_event_rollup_insert AFTER INSERT ON profiles_event
  REFERENCING NEW TABLE AS segments_new_events
  FOR EACH STATEMENT EXECUTE FUNCTION segments_event_rollup_insert();
CREATE TRIGGER segments_event_rollup_delete AFTER DELETE ON profiles_event
  REFERENCING OLD TABLE AS segments_old_events
  FOR EACH STATEMENT EXECUTE FUNCTION segments_event_rollup_delete();
CREATE TRIGGER segments_event_rollup_update AFTER UPDATE ON profiles_event
  REFERENCING OLD TABLE AS segments_old_events NEW TABLE AS segments_new_events
  FOR EACH STATEMENT EXECUTE FUNCTION segments_event_rollup_update();

-- Events stored before this migration.
INSERT INTO segments_eventdailycount (workspace_id, profile_id, name, day, count, first_at, last_at)
SELECT workspace_id, profile_id, name, ("timestamp" AT TIME ZONE 'UTC')::date, count(*), min("timestamp"), max("timestamp")
  FROM profiles_event
 GROUP BY 1, 2, 3, 4;
"""

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS segments_event_rollup_insert ON profiles_event;
DROP TRIGGER IF EXISTS segments_event_rollup_delete ON profiles_event;
DROP TRIGGER IF EXISTS segments_event_rollup_update ON profiles_event;
DROP FUNCTION IF EXISTS segments_event_rollup_insert();
DROP FUNCTION IF EXISTS segments_event_rollup_delete();
DROP FUNCTION IF EXISTS segments_event_rollup_update();
DROP FUNCTION IF EXISTS segments_event_rollup_refresh(bigint[], text[], date[]);
DELETE FROM segments_eventdailycount;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0001_initial"),
        ("segments", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(SEMVER_KEY, DROP_HELPERS),
        migrations.RunSQL(JSON_READERS, DROP_JSON_READERS),
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
    ]
