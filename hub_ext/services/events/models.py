"""The event store's tables (SQLAlchemy 2 declarative models).

One table holds learning events as xAPI statements (``statements``): the statement as stored
(``raw``, the one source of truth returned by the xAPI GET) plus the fields the analytics
queries filter and group on, extracted at insert time and indexed: course, learner, actor,
verb, object, timestamp, day, clicks, score.

Four small tables describe what the events are about; importers and the hub fill them:

- ``courses``: a course's start and length (OULAD's module presentations, a hub course);
- ``enrolments``: who is enrolled in a course, when, the final result and free attributes
  (OULAD's demographics, FutureLearn's enrolment fields);
- ``resources``: the course's resources (OULAD's VLE sites, FutureLearn's steps);
- ``assessments``: the course's assessments with due dates and weights.

Three more hold what FutureLearn exports besides events (a run's data that is not a learning
event of one learner at one time; the importer's docstring says why each is a table):

- ``team_members``: the course's team (staff: left out of every figure);
- ``video_stats``: FutureLearn's per-video aggregates (views, how far they were watched);
- ``survey_responses``: the weekly sentiment, archetype and leaving surveys' answers.

``documents`` holds the xAPI document resources (State, Activity Profile, Agent Profile):
each document belongs to the course of the source that wrote it, like statements.

A course's read-only extract (``analytics.extracts``) has one more, ``learner_days``: its
statements added up per learner and day (:data:`EXTRACT_METADATA`), which the store has not.

``sources`` holds the HTTP Basic credentials of the systems allowed to post statements
(an LMS's logstore_xapi plugin), each for one course; only a salted scrypt hash of each
secret is kept.

Times are stored as naive UTC datetimes; ``day`` is the UTC day number (days since
1970-01-01) of the timestamp, so grouping by day or week is integer arithmetic on every
database.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Assessment", "Attachment", "Base", "Course", "Document", "Enrolment", "Resource", "Source", "Statement",
    "SurveyResponse", "TeamMember", "VideoStats",
]  # fmt: skip

#: BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).
_PK = BigInteger().with_variant(Integer(), "sqlite")
#: the type of every course id column (a catalog's ids are at most 32 characters)
_COURSE_ID = String(64)


class Base(DeclarativeBase):
    pass


class _OfACourse:
    """A table of what a course has (enrolments, resources, assessments): each row belongs
    to one course, the first part of its primary key."""

    # first (a mixin's columns come last otherwise): the key is (course_id, ...)
    course_id: Mapped[str] = mapped_column(_COURSE_ID, primary_key=True, sort_order=-1)


class Statement(Base):
    """One xAPI statement, as stored, with the course and learner it maps to."""

    __tablename__ = "statements"

    pk: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    #: the statement's UUID (lowercase, hyphenated)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    #: the course (a catalog course id) the statement maps to; None if none could be found
    course_id: Mapped[str | None] = mapped_column(_COURSE_ID)
    #: the learner (a hub username, or an importer's learner id) the actor maps to
    learner: Mapped[str | None] = mapped_column(String(255))
    #: the actor's identifier as one string: ``mbox:mailto:a@b``, ``account:<homePage>|<name>``
    actor_key: Mapped[str] = mapped_column(String(512))
    verb: Mapped[str] = mapped_column(String(512))
    #: Activity, Agent, Group, StatementRef or SubStatement
    object_type: Mapped[str] = mapped_column(String(16))
    #: the activity IRI, the agent's key, the referenced statement id ("" for a SubStatement)
    object_id: Mapped[str] = mapped_column(String(512))
    timestamp: Mapped[datetime] = mapped_column(DateTime)
    stored: Mapped[datetime] = mapped_column(DateTime)
    #: UTC day number of ``timestamp`` (days since 1970-01-01)
    day: Mapped[int] = mapped_column(Integer)
    #: how many interactions the statement stands for (OULAD's sum_click; 1 otherwise)
    clicks: Mapped[int] = mapped_column(Integer, default=1)
    #: result.score.raw (or scaled * 100 when only scaled is given)
    score: Mapped[float | None] = mapped_column(Float)
    #: who sent it: a source's name, ``hub``, or an importer (``oulad``, ``futurelearn``, ...)
    source: Mapped[str] = mapped_column(String(64))
    voided: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the whole statement as the xAPI GET returns it (with stored, authority and version)
    raw: Mapped[dict] = mapped_column(JSON)
    #: context.registration (lowercase UUID), the ``registration`` filter of the xAPI GET
    registration: Mapped[str | None] = mapped_column(String(36))
    #: the statement's own context activities name its course (``urn:hub-ext:course:<id>``
    #: of ``course_id``), as every hub and imported statement does: the ``related_activities``
    #: filter by the course's IRI reads this, not a side row each (:mod:`.related`); NULL in
    #: rows stored before it, whose side rows hold the IRI
    course_context: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_statements_course_day", "course_id", "day"),
        # covers the heat-map and not-opened queries (no table lookups: rows hold the raw JSON)
        Index(
            "ix_statements_course_object",
            "course_id",
            "object_id",
            "object_type",
            "voided",
            "learner",
            "clicks",
            "verb",  # clicks are the viewed statements' (queries._clicks)
        ),  # fmt: skip
        Index("ix_statements_course_learner_ts", "course_id", "learner", "timestamp"),
        # a learner across courses (the institution-wide view, COURSE_ID "*")
        Index("ix_statements_learner_ts", "learner", "timestamp"),
        Index("ix_statements_actor", "actor_key"),
        Index("ix_statements_verb", "verb"),
        Index("ix_statements_stored", "stored"),
        # the xAPI GET's filters within a course: since/until (stored), activity, registration
        Index("ix_statements_course_stored", "course_id", "stored"),
        Index("ix_statements_course_registration", "course_id", "registration"),
        # the statements that target another (StatementRef): the GET filters take them in
        Index(
            "ix_statements_refs",
            "object_id",
            sqlite_where=text("object_type = 'StatementRef'"),
            postgresql_where=text("object_type = 'StatementRef'"),
        ),
    )

    # the statement's parts, read from the stored statement
    @property
    def actor(self) -> dict:
        return self.raw["actor"]

    @property
    def object(self) -> dict:
        return self.raw["object"]

    @property
    def result(self) -> dict | None:
        return self.raw.get("result")

    @property
    def context(self) -> dict | None:
        return self.raw.get("context")

    @property
    def authority(self) -> dict | None:
        return self.raw.get("authority")


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[str] = mapped_column(_COURSE_ID, primary_key=True)
    title: Mapped[str] = mapped_column(String(255), default="")
    #: when the course starts (naive UTC); weeks are counted from this day (week 0)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime)
    length_days: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64), default="")
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)


class Enrolment(_OfACourse, Base):
    __tablename__ = "enrolments"

    learner: Mapped[str] = mapped_column(String(255), primary_key=True)
    registered_at: Mapped[datetime | None] = mapped_column(DateTime)
    unregistered_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: e.g. OULAD's Pass, Fail, Withdrawn, Distinction
    final_result: Mapped[str | None] = mapped_column(String(32))
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(64), default="")


class Resource(_OfACourse, Base):
    __tablename__ = "resources"

    #: the activity IRI statements use as object id
    resource_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(255), default="")
    week_from: Mapped[int | None] = mapped_column(Integer)
    week_to: Mapped[int | None] = mapped_column(Integer)


class Assessment(_OfACourse, Base):
    __tablename__ = "assessments"

    #: the activity IRI submissions use as object id
    assessment_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    type: Mapped[str] = mapped_column(String(32), default="")
    due_at: Mapped[datetime | None] = mapped_column(DateTime)
    weight: Mapped[float | None] = mapped_column(Float)


class TeamMember(_OfACourse, Base):
    """A member of the course's team (FutureLearn's team-members export): staff, not a
    learner. Their names are not kept: the analytics need only who to leave out."""

    __tablename__ = "team_members"

    #: the id the person has in the course's other exports (their learner id there)
    learner: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: e.g. FutureLearn's ``organisation_admin``, ``mentor``, ``educator``
    team_role: Mapped[str] = mapped_column(String(64), default="")
    user_role: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(64), default="")


class VideoStats(_OfACourse, Base):
    """One video step's viewing figures, as FutureLearn aggregates them over the run (every
    viewer, staff included: the export does not say who watched)."""

    __tablename__ = "video_stats"

    #: the step's position, ``week.step`` (``1.3``), as the step-activity export names it
    step: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(255), default="")
    #: seconds
    duration_s: Mapped[int | None] = mapped_column(Integer)
    views: Mapped[int | None] = mapped_column(Integer)
    downloads: Mapped[int | None] = mapped_column(Integer)
    caption_views: Mapped[int | None] = mapped_column(Integer)
    transcript_views: Mapped[int | None] = mapped_column(Integer)
    #: viewed in HD, % of views
    viewed_hd: Mapped[float | None] = mapped_column(Float)
    #: % of views that reached 5, 10, 25, 50, 75, 95 and 100 % of the video:
    #: ``{"5": 96.2, "10": 90.1, ...}``
    viewed_percent: Mapped[dict] = mapped_column(JSON, default=dict)
    #: the per-device and per-continent percentages, as exported
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)


class SurveyResponse(_OfACourse, Base):
    """One answer to one of FutureLearn's surveys of a run.

    ``survey`` is ``weekly-sentiment`` (anonymous: ``learner`` is None; ``week_number``
    the week asked about, ``rating`` the experience rating, ``answer`` the reason given),
    ``archetype`` (``answer`` the archetype) or ``leaving`` (``responded_at`` when they
    left, ``answer`` the leaving reason, ``step``/``week_number``/``step_at`` the last step
    they completed).
    """

    __tablename__ = "survey_responses"

    survey: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: the response's id in the export
    response_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    learner: Mapped[str | None] = mapped_column(String(255))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime)
    week_number: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[str | None] = mapped_column(String(32))
    step_at: Mapped[datetime | None] = mapped_column(DateTime)
    rating: Mapped[int | None] = mapped_column(Integer)
    #: the choice made, or the learner's own words (the sentiment survey's reason)
    answer: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(64), default="")


class Source(Base):
    """A system allowed to post statements, with its HTTP Basic credentials (hashed)."""

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: the Basic auth username (public)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``scrypt$n$r$p$salt_hex$hash_hex`` of the secret
    secret_hash: Mapped[str] = mapped_column(String(255))
    #: the one course whose statements the source may post, read and void (a statement that
    #: names another is refused); None only for a source made before it was required, which
    #: the events service refuses until it is re-created with a course
    course_id: Mapped[str | None] = mapped_column(_COURSE_ID)
    created: Mapped[datetime] = mapped_column(DateTime)


class Document(Base):
    """One xAPI document (State, Activity Profile or Agent Profile), of one course.

    A document is named by its course, its ``resource``, the context it is kept in (the
    activity, the agent, the registration: "" where the resource has none) and its id (the
    ``stateId`` or ``profileId``). ``context_key`` is a SHA-256 of the resource and that
    context, so that the unique key stays short (PostgreSQL's B-tree keys are bounded).
    """

    __tablename__ = "documents"

    pk: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    course_id: Mapped[str] = mapped_column(_COURSE_ID)
    #: ``state``, ``activity_profile`` or ``agent_profile``
    resource: Mapped[str] = mapped_column(String(16))
    activity_id: Mapped[str] = mapped_column(String(512), default="")
    #: the agent's identifier as :func:`~.xapi.actor_key` writes it
    agent_key: Mapped[str] = mapped_column(String(512), default="")
    registration: Mapped[str] = mapped_column(String(36), default="")
    context_key: Mapped[str] = mapped_column(String(64))
    #: the ``stateId`` or ``profileId``
    doc_id: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    #: the SHA-1 of ``content`` in lowercase hexadecimal (the xAPI ETag, unquoted)
    etag: Mapped[str] = mapped_column(String(40))
    #: when it was last written (naive UTC)
    updated: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("uq_documents_key", "course_id", "context_key", "doc_id", unique=True),)


class Attachment(Base):
    """The raw data of a statement's attachment (sent as a ``multipart/mixed`` part), of one
    course, named by its SHA-2 as the statements' ``attachments[].sha2`` name it."""

    __tablename__ = "attachments"

    course_id: Mapped[str] = mapped_column(_COURSE_ID, primary_key=True)
    #: lowercase hexadecimal (SHA-224 to SHA-512)
    sha2: Mapped[str] = mapped_column(String(128), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)


# ------------------------------------------------ the statements' related activities and agents


class StatementActivity(Base):
    """An activity a statement is about besides its object: each of its context activities,
    and the object and context activities of its SubStatement (the xAPI GET's
    ``related_activities=true``: :mod:`.related`).

    Keyed by the statement's ``pk``; ``activity_key`` is a SHA-256 of the activity IRI
    (IRIs have no length bound; PostgreSQL's B-tree keys do), ``course_id`` the statement's.
    """

    __tablename__ = "statement_activities"

    pk: Mapped[int] = mapped_column(_PK, primary_key=True)
    activity_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    course_id: Mapped[str | None] = mapped_column(_COURSE_ID)

    __table_args__ = (Index("ix_statement_activities_key", "activity_key", "course_id", "pk"),)


class StatementAgent(Base):
    """An agent a statement names besides its actor and object (:mod:`.related`).

    ``member``: the agent is a member of the statement's actor or object Group, which the
    xAPI GET's ``agent`` filter matches; otherwise it is its authority, its context's
    instructor or team (or a team's member), or an agent of its SubStatement, which only
    ``related_agents=true`` matches. ``agent_key`` is a SHA-256 of :func:`~.xapi.actor_key`.
    """

    __tablename__ = "statement_agents"

    pk: Mapped[int] = mapped_column(_PK, primary_key=True)
    agent_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    member: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    course_id: Mapped[str | None] = mapped_column(_COURSE_ID)

    __table_args__ = (Index("ix_statement_agents_key", "agent_key", "course_id", "member", "pk"),)


__all__ += ["StatementActivity", "StatementAgent"]


# ------------------------------------------------ what only a course's extract holds

#: the tables of a course's read-only extract that the store does not have: kept by the
#: analytics service as it brings the extract up to date (``analytics.extracts``), read by
#: :mod:`.queries` where they exist (a store, or an extract of an older release, has none)
EXTRACT_METADATA = MetaData()

#: per course, learner and UTC day, the learner's live (not voided) statements of that day
#: added up: what the day-level figures (summary, daily and weekly activity, the funnel,
#: segments) read instead of every statement of the course. One row per (course, learner,
#: day) with at least one statement; ``learner`` is NULL for the statements that map to no
#: learner, as in ``statements``.
learner_days = Table(
    "learner_days",
    EXTRACT_METADATA,
    Column("course_id", _COURSE_ID, nullable=False),
    Column("day", Integer, nullable=False),
    Column("learner", String(255)),
    #: the statements
    Column("events", Integer, nullable=False),
    #: VLE clicks (the click counts of its ``viewed`` statements: ``queries._clicks``)
    Column("clicks", Integer, nullable=False),
    #: the first and last statement's timestamps
    Column("first_ts", DateTime, nullable=False),
    Column("last_ts", DateTime, nullable=False),
    Index("ix_learner_days_day", "course_id", "day", "learner"),
    Index("ix_learner_days_learner", "course_id", "learner", "day"),
)

#: the heat-map without filters (every learner, the whole course): per resource (an
#: ``Activity`` object), VLE clicks, statements and distinct learners, over the whole course
#: (``week`` NULL: the ranking) and per course week, staff left out; read while
#: ``sums_made`` names the course
resource_sums = Table(
    "resource_sums",
    EXTRACT_METADATA,
    Column("course_id", _COURSE_ID, nullable=False),
    Column("object_id", String(512), nullable=False),
    Column("week", Integer),
    Column("clicks", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("learners", Integer, nullable=False),
    Index("ix_resource_sums", "course_id", "week", "object_id", unique=True),
    Index("ix_resource_sums_object", "course_id", "object_id"),
)
#: what ``resource_sums`` of a course were made with: the start day its weeks count from
#: and the staff it leaves out (when either changes, every resource is summed again)
resource_sums_basis = Table(
    "resource_sums_basis",
    EXTRACT_METADATA,
    Column("course_id", _COURSE_ID, primary_key=True),
    Column("start_day", Integer),
    Column("staff", JSON, nullable=False),
)
#: the resources whose statements changed since their sums were made (written in the copy's
#: transaction; only these are summed again)
resource_sums_pending = Table(
    "resource_sums_pending",
    EXTRACT_METADATA,
    Column("course_id", _COURSE_ID, primary_key=True),
    Column("object_id", String(512), primary_key=True),
)


def _counts_per_week(name: str, *counts: str) -> Table:
    """An extract's table of whole-number ``counts`` per course and course week."""
    return Table(
        name,
        EXTRACT_METADATA,
        Column("course_id", _COURSE_ID, primary_key=True),
        Column("week", Integer, primary_key=True),
        *[Column(count, Integer, nullable=False) for count in counts],
    )


#: a course's weekly activity (``queries.weekly_engagement``'s weeks, but the share of the
#: enrolled) and weekly funnel (``queries.funnel``'s), as the last update left the course;
#: read while ``sums_made`` names the course
weekly_sums = _counts_per_week("weekly_sums", "active_learners", "events", "clicks")
funnel_sums = _counts_per_week("funnel_sums", "reached", "active", "active_every_week")
#: the courses whose ``resource_sums``, ``weekly_sums`` and ``funnel_sums`` are those of the
#: course as it is: an update's transaction empties it, ``queries.refresh_sums`` (after it)
#: makes them again and names the course; until then the routes read what they are made of
sums_made = Table("sums_made", EXTRACT_METADATA, Column("course_id", _COURSE_ID, primary_key=True))

__all__ += [
    "EXTRACT_METADATA", "funnel_sums", "learner_days", "resource_sums", "resource_sums_basis",
    "resource_sums_pending", "sums_made", "weekly_sums",
]  # fmt: skip
