"""The interest graph's Feast objects: what training reads and serving looks up.

The tables come from `interest-graph features build` (activity and item statistics),
the embeddings stage (item text embeddings) and the GNN stage (user interests, by
push). Their folder is ``$INTEREST_GRAPH_FEATURES_DIR``, which the library sets.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.types import Array, Float32, Float64, Int64, String
from feast.value_type import ValueType

# Where the tables are; the default is the build's, so `feast` works unconfigured.
FEATURES_DIR = Path(
    os.environ.get(
        "INTEREST_GRAPH_FEATURES_DIR",
        Path(__file__).resolve().parent.parent / ".work" / "data" / "features",
    )
).resolve()

# A shopper: every user feature is keyed by the canonical user_id.
user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A shopper (canonical users.user_id).",
)

# A product: every item feature is keyed by the canonical item_id.
item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A product (canonical items.item_id).",
)

# User snapshots from events strictly before each stamp (features build).
user_activity_source = FileSource(
    name="user_activity_source",
    path=str(FEATURES_DIR / "user_activity.parquet"),
    timestamp_field="event_timestamp",
)

# How much, how recently and on what a user shops: the model's behaviour inputs.
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    # Past 90 days nothing in any window is left: older snapshots are no evidence.
    ttl=timedelta(days=90),
    schema=[
        Field(name="views_7d", dtype=Int64),
        Field(name="carts_7d", dtype=Int64),
        Field(name="purchases_7d", dtype=Int64),
        Field(name="views_30d", dtype=Int64),
        Field(name="carts_30d", dtype=Int64),
        Field(name="purchases_30d", dtype=Int64),
        Field(name="views_90d", dtype=Int64),
        Field(name="carts_90d", dtype=Int64),
        Field(name="purchases_90d", dtype=Int64),
        Field(name="spend_30d", dtype=Float64),
        Field(name="spend_90d", dtype=Float64),
        Field(name="days_since_last_event", dtype=Float64),
        Field(name="favourite_categories", dtype=Array(String)),
    ],
    source=user_activity_source,
    online=True,
    description="User event counts, spend, recency and top categories.",
)

# Item snapshots from events strictly before each stamp (features build).
item_statistics_source = FileSource(
    name="item_statistics_source",
    path=str(FEATURES_DIR / "item_statistics.parquet"),
    timestamp_field="event_timestamp",
)

# Popularity and conversion: what the ranker knows about an item besides its text.
item_statistics = FeatureView(
    name="item_statistics",
    entities=[item],
    ttl=timedelta(days=90),
    schema=[
        Field(name="views_7d", dtype=Int64),
        Field(name="carts_7d", dtype=Int64),
        Field(name="purchases_7d", dtype=Int64),
        Field(name="views_30d", dtype=Int64),
        Field(name="carts_30d", dtype=Int64),
        Field(name="purchases_30d", dtype=Int64),
        Field(name="conversion_30d", dtype=Float64),
        Field(name="price", dtype=Float64),
        Field(name="category", dtype=String),
    ],
    source=item_statistics_source,
    online=True,
    description="Item popularity over 7 and 30 days, conversion, price, category.",
)

# Written by the embeddings stage: one vector per item and text model.
item_text_embeddings_source = FileSource(
    name="item_text_embeddings_source",
    path=str(FEATURES_DIR / "item_text_embeddings.parquet"),
    timestamp_field="event_timestamp",
)

# The text side of an item, for cold items and for the GNN's item inputs.
item_text_embeddings = FeatureView(
    name="item_text_embeddings",
    entities=[item],
    # Text embeddings do not age; a year bounds reads of forgotten models.
    ttl=timedelta(days=365),
    schema=[
        Field(name="text_embedding", dtype=Array(Float32)),
        Field(name="text_model", dtype=String),
    ],
    source=item_text_embeddings_source,
    online=True,
    description="Sentence embedding of each item's title and description.",
)

# What each buyer has bought, newest first (one row per user, at their last
# purchase), from `interest-graph features build`.
user_recent_items_source = FileSource(
    name="user_recent_items_source",
    path=str(FEATURES_DIR / "user_recent_items.parquet"),
    timestamp_field="event_timestamp",
)

# Serving excludes these items and names them in its reasons.
user_recent_items = FeatureView(
    name="user_recent_items",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[
        # A JSON list of item ids (Feast 0.67's offline push cannot write
        # list<string> columns to Parquet).
        Field(name="recent_items", dtype=String),
    ],
    source=user_recent_items_source,
    online=True,
    description="The user's distinct purchased items, newest first (at most 100).",
)

# History of the pushed interest vectors, for training frames and re-materialising.
user_interests_source = FileSource(
    name="user_interests_source",
    path=str(FEATURES_DIR / "user_interests.parquet"),
    timestamp_field="event_timestamp",
)

# The GNN stage pushes fresh user vectors here (store.push) without a batch job.
user_interests_push = PushSource(
    name="user_interests_push",
    batch_source=user_interests_source,
)

# What the GNN learned a user is into: the candidate retrieval query vector.
user_interest_vectors = FeatureView(
    name="user_interest_vectors",
    entities=[user],
    ttl=timedelta(days=90),
    schema=[
        Field(name="interest_vector", dtype=Array(Float32)),
        # A JSON list of category names: Feast 0.67's offline push cannot write
        # list<string> columns to Parquet.
        Field(name="top_interests", dtype=String),
    ],
    source=user_interests_push,
    online=True,
    description="GNN user embedding and its strongest interest categories.",
)

# Everything the model trains on, point in time, through get_historical_features.
training = FeatureService(
    name="training",
    features=[user_activity, item_statistics, item_text_embeddings],
    description="Training frame features: user behaviour, item statistics and text.",
)

# What the online service reads per request, from the online store.
serving = FeatureService(
    name="serving",
    features=[
        user_activity,
        user_interest_vectors,
        user_recent_items,
        item_statistics,
        item_text_embeddings,
    ],
    description="Online lookup features for recommending to a user.",
)
