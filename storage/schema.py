"""The SQLite schema as a list of forward migrations; `PRAGMA user_version` says
how many have run. Append new migrations; never edit one that has shipped."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the whole first schema.
    """
    CREATE TABLE tags (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        description TEXT NOT NULL DEFAULT '',
        nsfw INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE artists (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        url TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE characters (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        description TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        gender TEXT NOT NULL DEFAULT '',
        ages TEXT NOT NULL DEFAULT '[]',
        birth_date TEXT NOT NULL DEFAULT '',
        nationality TEXT NOT NULL DEFAULT '',
        occupations TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL
    );
    CREATE TABLE albums (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        owner_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE images (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL UNIQUE,
        md5 TEXT NOT NULL,
        phash INTEGER NOT NULL,
        ph0 INTEGER NOT NULL, ph1 INTEGER NOT NULL, ph2 INTEGER NOT NULL, ph3 INTEGER NOT NULL,
        mimetype TEXT NOT NULL,
        extension TEXT NOT NULL,
        size INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        aspect_ratio TEXT NOT NULL,
        orientation TEXT NOT NULL,
        dominant_color TEXT NOT NULL,
        animated INTEGER NOT NULL DEFAULT 0,
        thumbnail_size INTEGER NOT NULL DEFAULT 0,
        rating TEXT NOT NULL CHECK (rating IN ('sfw', 'questionable', 'nsfw')),
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
        title TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        source_name TEXT,
        source_url TEXT,
        original_filename TEXT,
        artist_rid INTEGER REFERENCES artists(rid) ON DELETE SET NULL,
        album_rid INTEGER REFERENCES albums(rid) ON DELETE SET NULL,
        uploader_id TEXT,
        uploader_name TEXT,
        approver_id TEXT,
        approver_name TEXT,
        likes INTEGER NOT NULL DEFAULT 0,
        favorites INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        expires_at REAL,
        near_duplicate_of TEXT
    );
    CREATE INDEX images_status_seq ON images(status, seq);
    CREATE INDEX images_status_created ON images(status, created_at);
    CREATE INDEX images_status_likes ON images(status, likes, seq);
    CREATE INDEX images_artist ON images(artist_rid, seq);
    CREATE INDEX images_album ON images(album_rid, seq);
    CREATE INDEX images_uploader ON images(uploader_id, seq);
    CREATE INDEX images_uploader_name ON images(uploader_name COLLATE NOCASE, seq);
    CREATE INDEX images_expires ON images(expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX images_ph0 ON images(ph0);
    CREATE INDEX images_ph1 ON images(ph1);
    CREATE INDEX images_ph2 ON images(ph2);
    CREATE INDEX images_ph3 ON images(ph3);

    CREATE TABLE image_tags (
        tag_rid INTEGER NOT NULL REFERENCES tags(rid) ON DELETE CASCADE,
        seq INTEGER NOT NULL REFERENCES images(seq) ON DELETE CASCADE,
        PRIMARY KEY (tag_rid, seq)
    ) WITHOUT ROWID;
    CREATE INDEX image_tags_seq ON image_tags(seq);

    CREATE TABLE image_characters (
        character_rid INTEGER NOT NULL REFERENCES characters(rid) ON DELETE CASCADE,
        seq INTEGER NOT NULL REFERENCES images(seq) ON DELETE CASCADE,
        PRIMARY KEY (character_rid, seq)
    ) WITHOUT ROWID;
    CREATE INDEX image_characters_seq ON image_characters(seq);

    -- Pools: for every set random() draws from (all approved images, each rating,
    -- each tag, artist and character), a dense numbering 0..size-1 of its approved
    -- images, kept dense by moving the last member into a removed member's slot.
    -- A uniform draw is then one random slot number and one index lookup, whatever
    -- the size of the collection.
    CREATE TABLE pools (
        pool INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0)
    );
    CREATE TABLE pool_slots (
        pool INTEGER NOT NULL REFERENCES pools(pool),
        slot INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (pool, slot)
    ) WITHOUT ROWID;
    CREATE INDEX pool_slots_seq ON pool_slots(seq, pool);

    CREATE TABLE likes (
        seq INTEGER NOT NULL REFERENCES images(seq) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('like', 'favorite')),
        created_at REAL NOT NULL,
        PRIMARY KEY (seq, user_id, kind)
    ) WITHOUT ROWID;

    -- What each member has already been shown by /random, per filter set.
    CREATE TABLE seen (
        user_id TEXT NOT NULL,
        filter_key TEXT NOT NULL,
        seq INTEGER NOT NULL REFERENCES images(seq) ON DELETE CASCADE,
        PRIMARY KEY (user_id, filter_key, seq)
    ) WITHOUT ROWID;
    CREATE INDEX seen_seq ON seen(seq);

    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        secret_sha256 BLOB NOT NULL UNIQUE,
        owner_id TEXT NOT NULL,
        owner_name TEXT NOT NULL,
        purpose TEXT NOT NULL DEFAULT '',
        scopes TEXT NOT NULL DEFAULT '',
        issued_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        last_used_at REAL
    );
    CREATE INDEX tokens_owner ON tokens(owner_id);

    CREATE TABLE token_requests (
        id TEXT PRIMARY KEY,
        requester_id TEXT NOT NULL,
        requester_name TEXT NOT NULL,
        purpose TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
        decided_by TEXT,
        created_at REAL NOT NULL,
        decided_at REAL,
        token_id TEXT REFERENCES tokens(id) ON DELETE SET NULL
    );
    CREATE UNIQUE INDEX token_requests_one_pending
        ON token_requests(requester_id) WHERE status = 'pending';

    -- Small key/value state that must survive restarts (e.g. the hash of the
    -- last synced command tree).
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: a counter every write that may change images bumps, so a process keeping
    # images in memory sees changes made by another one (e.g. `bot.py import`).
    """
    CREATE TABLE changes (
        what TEXT PRIMARY KEY,
        counter INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO changes (what, counter) VALUES ('images', 0);
    """,
    # 3: small values may expire (the bot's per-message state: what a button re-runs,
    # where a review was posted), so they stop growing with every use. Such values
    # written before could not expire: they get the lifetime the bot now gives them.
    """
    ALTER TABLE kv ADD COLUMN expires_at REAL;
    CREATE INDEX kv_expires ON kv(expires_at) WHERE expires_at IS NOT NULL;
    UPDATE kv SET expires_at = CAST(strftime('%s', 'now') AS REAL) + 30 * 86400
        WHERE key LIKE 'discord:random:%' OR key LIKE 'discord:moderation:%'
            OR key LIKE 'discord:token-request:%';
    """,
    # 4: a durable outbox of what the bot must announce (a pending upload, a decision),
    # written in the same transaction as the change, so an upload taken by any process
    # reaches the moderators, also when the bot was down. AUTOINCREMENT: a pruned table
    # never hands out a seq a consumer has already passed.
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        image_id TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    CREATE INDEX outbox_created ON outbox(created_at);
    -- How far each consumer has handled the outbox (its last handled seq).
    CREATE TABLE outbox_cursors (
        consumer TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 5: each image's JSON as a dialect renders it, kept so a random draw hands out
    # bytes instead of rebuilding objects. `rev` counts the changes to what a rendering
    # shows (status, approver, likes); a rendering is current while its `rev` equals its
    # image's. With it, the image's artist, tag and character rids (as the hydration's
    # group_concat lists them), so a draw needs no subquery to find them. Existing rows
    # start without renderings: they are rendered by the server's background backfill
    # (ImageService.render_backlog) or on their first draw.
    """
    ALTER TABLE images ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE rendered (
        seq INTEGER NOT NULL REFERENCES images(seq) ON DELETE CASCADE,
        dialect TEXT NOT NULL,
        rev INTEGER NOT NULL,
        body BLOB NOT NULL,
        artist_rid INTEGER,
        tag_rids TEXT,
        character_rids TEXT,
        PRIMARY KEY (seq, dialect)
    ) WITHOUT ROWID;
    """,
    # 6: a member's likes by member, newest first (/favourites pages through them and
    # /random draws from them without reading anyone else's).
    """
    CREATE INDEX likes_member ON likes(user_id, kind, created_at);
    """,
    # 7: members' reports of images (one per member and image), each announced to the
    # owners through the outbox (`image_reported`) in the transaction that files it.
    """
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id TEXT NOT NULL,
        reporter_id TEXT NOT NULL,
        reporter_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        text TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        action TEXT,
        handled_by_id TEXT,
        handled_by_name TEXT,
        handled_at REAL,
        UNIQUE (image_id, reporter_id)
    );
    """,
    # 8: the leaderboard's reads (LeaderboardRepo): all time's uploads per uploader
    # counted from an index alone, in its order (no sort of a million rows; the week's
    # read images_status_created's range), and the likes given since a time.
    """
    CREATE INDEX images_status_uploader ON images(status, uploader_id);
    CREATE INDEX likes_kind_created ON likes(kind, created_at, seq);
    """,
    # 9: the all-time leaderboard from a counter per uploader (storage/uploader_counts.py:
    # kept by every write that approves an image or takes it out, so the read costs the
    # same at 1k and 1M images) instead of counting images_status_uploader, which goes;
    # the week's uploaders from a range of a covering index of approved images.
    """
    CREATE TABLE uploader_counts (
        uploader_id TEXT PRIMARY KEY,
        approved INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX uploader_counts_rank ON uploader_counts(approved DESC, uploader_id);
    INSERT INTO uploader_counts (uploader_id, approved)
        SELECT uploader_id, COUNT(*) FROM images
        WHERE status = 'approved' AND uploader_id IS NOT NULL GROUP BY uploader_id;
    DROP INDEX images_status_uploader;
    -- status too, or SQLite reads each row for the WHERE that the index implies.
    CREATE INDEX images_approved_created ON images(created_at, uploader_id, status)
        WHERE status = 'approved';
    """,
]
