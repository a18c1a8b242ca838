"""Generate a deterministic synthetic shop (events, items, users) from a SynthConfig.

Users mix latent category interests; items have Zipf popularity; views funnel to buys.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from interest_graph.config import SynthConfig
from interest_graph.logs import progress
from interest_graph.schema import EVENT_TYPES, ShopTables, conform

# Hand-written shop vocabulary; its words never repeat across categories so that an
# item's text says which category it is from. Categories beyond this list get
# deterministic pseudo-words (see _pseudo_words).
CATEGORY_VOCAB: dict[str, tuple[str, ...]] = {
    "garden": ("shovel", "trowel", "hose", "planter", "seeds", "compost", "pruner",
               "rake", "watering", "lawn", "fertilizer", "trellis"),
    "kitchen": ("skillet", "spatula", "whisk", "saucepan", "colander", "grater",
                "ladle", "cutlery", "knife", "blender", "kettle", "apron"),
    "toys": ("puzzle", "doll", "blocks", "plush", "robot", "racecar", "marbles",
             "kite", "yoyo", "dinosaur", "playset", "teddy"),
    "books": ("novel", "paperback", "hardcover", "biography", "thriller",
              "anthology", "poetry", "memoir", "atlas", "cookbook", "chapters",
              "author"),
    "beauty": ("lipstick", "mascara", "serum", "moisturizer", "eyeliner", "blush",
               "perfume", "cleanser", "toner", "foundation", "nailpolish", "lotion"),
    "sports": ("football", "racket", "dumbbell", "jersey", "treadmill", "goalpost",
               "shinpads", "whistle", "kettlebell", "tennis", "basketball",
               "yogamat"),
    "electronics": ("charger", "headphones", "speaker", "cable", "adapter",
                    "bluetooth", "battery", "monitor", "keyboard", "router", "usb",
                    "earbuds"),
    "fashion": ("jacket", "scarf", "dress", "sweater", "blouse", "denim",
                "cardigan", "trousers", "hoodie", "skirt", "blazer", "tshirt"),
    "shoes": ("sneakers", "boots", "sandals", "loafers", "heels", "insoles",
              "laces", "slippers", "trainers", "moccasins", "clogs", "espadrilles"),
    "jewelry": ("necklace", "bracelet", "earrings", "pendant", "ring", "charm",
                "brooch", "anklet", "locket", "gemstone", "silver", "gold"),
    "pets": ("leash", "collar", "kibble", "catnip", "aquarium", "birdcage",
             "scratcher", "chew", "litter", "harness", "petbed", "treats"),
    "baby": ("diaper", "pacifier", "stroller", "onesie", "bib", "rattle", "crib",
             "teether", "babygrow", "swaddle", "highchair", "nursery"),
    "office": ("stapler", "binder", "notebook", "pen", "folder", "envelope",
               "clipboard", "paperclip", "highlighter", "desk", "printer", "label"),
    "automotive": ("wiper", "dashcam", "tyre", "motoroil", "jumpstarter",
                   "seatcover", "carwax", "sparkplug", "headlight", "floormat",
                   "coolant", "carjack"),
    "music": ("guitar", "ukulele", "drumsticks", "vinyl", "strings", "piano",
              "harmonica", "metronome", "amplifier", "microphone", "capo",
              "songbook"),
    "games": ("boardgame", "dice", "chess", "cards", "controller", "joystick",
              "console", "gamepad", "tokens", "strategy", "trivia", "dominoes"),
    "outdoor": ("tent", "hammock", "lantern", "compass", "backpack", "sleepingbag",
                "firepit", "canteen", "binoculars", "trekking", "poles",
                "campstove"),
    "decor": ("vase", "cushion", "candle", "mirror", "frame", "rug", "wallart",
              "curtain", "ornament", "throw", "figurine", "clock"),
    "bedding": ("duvet", "pillow", "mattress", "bedsheet", "quilt", "pillowcase",
                "blanket", "comforter", "topper", "bedspread", "valance",
                "headboard"),
    "bath": ("towel", "bathmat", "shower", "loofah", "soapdish", "bathrobe",
             "toothbrush", "sponge", "razor", "faucet", "toiletry", "bubblebath"),
    "tools": ("drill", "hammer", "screwdriver", "pliers", "sander", "chisel",
              "spanner", "toolbox", "sawblade", "spiritlevel", "clamp",
              "multimeter"),
    "grocery": ("coffee", "tea", "pasta", "cereal", "olive", "honey", "spices",
                "chocolate", "biscuits", "rice", "jam", "granola"),
    "health": ("vitamins", "bandage", "thermometer", "supplement", "probiotic",
               "painrelief", "inhaler", "plaster", "antiseptic", "massager",
               "pillbox", "zinc"),
    "crafts": ("yarn", "knitting", "crochet", "beads", "glitter", "stencil",
               "easel", "canvas", "paintbrush", "sewing", "embroidery", "glue"),
    "lighting": ("lamp", "bulb", "chandelier", "spotlight", "nightlight", "dimmer",
                 "lampshade", "fairylights", "sconce", "led", "torch",
                 "pendantlight"),
    "furniture": ("sofa", "armchair", "bookshelf", "wardrobe", "dresser",
                  "ottoman", "bench", "stool", "sideboard", "recliner",
                  "nightstand", "tabletop"),
    "stationery": ("postcard", "journal", "sticker", "washi", "fountainpen",
                   "inkwell", "planner", "diary", "notecard", "bookmark",
                   "calligraphy", "eraser"),
    "travel": ("suitcase", "passport", "luggage", "carryon", "neckpillow",
               "packingcube", "toiletbag", "luggagetag", "travelwallet", "duffel",
               "rollaboard", "plugadaptor"),
    "watches": ("wristwatch", "chronograph", "watchstrap", "dial", "smartwatch",
                "bezel", "quartz", "timepiece", "watchband", "caseback", "crown",
                "tourbillon"),
}  # fmt: skip
WORDS_PER_CATEGORY = 12

# Shared by every category: they make texts look alike on purpose, so text is a
# signal about the category and not a label.
GENERIC_WORDS: tuple[str, ...] = (
    "premium", "classic", "new", "deluxe", "compact", "durable", "lightweight",
    "portable", "eco", "modern", "vintage", "essential", "set", "pack", "bundle",
    "large", "small", "mini", "pro", "original",
)  # fmt: skip
FILLER_WORDS: tuple[str, ...] = (
    "with", "for", "and", "the", "a", "of", "in", "your", "this", "perfect",
    "everyday", "quality",
)  # fmt: skip

COUNTRIES: tuple[str, ...] = (
    "GB",
    "DE",
    "FR",
    "US",
    "NL",
    "ES",
    "IT",
    "IE",
    "SE",
    "PL",
)
COUNTRY_WEIGHTS: tuple[float, ...] = (
    0.40, 0.14, 0.11, 0.09, 0.07, 0.06, 0.05, 0.03, 0.03, 0.02,
)  # fmt: skip

# Fixed, not config.seed: category names and words stay the same across seeds.
_VOCAB_SEED = 20_260_105
_SYLLABLE_ONSETS = tuple("bdfgklmnprstvz") + ("br", "ch", "sh", "tr")
_SYLLABLE_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")

# Share of views that ignore the user's interests (browsing, search, promotions):
# keeps the graph connected across interests and gives recommenders negatives.
_EXPLORE_RATE = 0.05
_ACTIVITY_SIGMA = 1.2  # lognormal sigma of per-user activity: heavy-tailed users
_CATEGORY_SIZE_SIGMA = 0.6  # lognormal sigma of category size / appeal
_CATEGORY_PRICE_MU, _CATEGORY_PRICE_SIGMA = 3.0, 0.8  # median category level ~20
_ITEM_PRICE_SIGMA = 0.35
_MIN_PRICE = 0.5
_CART_DELAY_MEAN_S = 10 * 60.0
_PURCHASE_DELAY_MEAN_S = 30 * 60.0
_PURCHASE_QTY_P = 0.7  # geometric: 70% buy one, the rest a few
_REDRAW_ROUNDS = 8
_CHUNK = 1_000_000  # views per chunk: bounds the (chunk x interests) temporaries
_TITLE_WORDS = (3, 5)
_DESCRIPTION_WORDS = (8, 20)

_NS_PER_S = 1_000_000_000
_NS_PER_HOUR = 3600 * _NS_PER_S
_NS_PER_DAY = 24 * _NS_PER_HOUR
# Evening-heavy shopping day and busier weekends (index 0 = Monday).
_HOUR_WEIGHTS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4, 4.5, 4.5, 4, 4, 4.5, 5, 6, 7, 7.5,
     6.5, 4.5, 2.5],
    dtype=np.float64,
)  # fmt: skip
_WEEKDAY_WEIGHTS = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.3, 1.25])


def generate_shop(config: SynthConfig) -> ShopTables:
    """Generate a synthetic shop whose tables depend only on ``config``.

    The number of view funnels is ``events / (1 + cart_rate + cart_rate *
    purchase_rate)``, so the expected number of canonical events equals
    ``config.events``; the realised count differs by binomial noise only (well
    under 1% for more than ~10k events). Every user gets at least one view
    when there are at least as many views as users.

    Args:
        config: sizes, seed and shape knobs of the shop.

    Returns:
        Canonical events (sorted by timestamp, then user), items and users.
    """
    rng = np.random.default_rng(config.seed)
    names, vocab = category_vocabulary(config.categories)
    # With fewer items than categories the extra categories could never be sold.
    n_cats = min(config.categories, config.items)
    start = np.datetime64(config.start, "ns")
    span_ns = config.days * _NS_PER_DAY

    cat_weight = rng.lognormal(0.0, _CATEGORY_SIZE_SIGMA, n_cats)
    cat_weight /= cat_weight.sum()
    item_cat = _assign_categories(rng, config.items, cat_weight)
    cat_level = rng.lognormal(_CATEGORY_PRICE_MU, _CATEGORY_PRICE_SIGMA, n_cats)
    item_price = np.maximum(
        np.round(
            cat_level[item_cat] * rng.lognormal(0, _ITEM_PRICE_SIGMA, item_cat.size), 2
        ),
        _MIN_PRICE,
    )
    sampler = _ItemSampler(rng, item_cat, n_cats, config.popularity_exponent)

    funnel_len = 1.0 + config.cart_rate + config.cart_rate * config.purchase_rate
    n_views = max(1, round(config.events / funnel_len))
    views_per_user = _views_per_user(rng, config.users, n_views)
    interests, interest_cdf, n_interests = _user_interests(
        rng, config.users, cat_weight, config.interests_per_user
    )

    view_user = np.repeat(np.arange(config.users, dtype=np.int32), views_per_user)
    view_time = _sample_times(rng, n_views, config.days, start)
    view_item = np.empty(n_views, dtype=np.int32)
    chunks = range(0, n_views, _CHUNK)
    for lo in progress(chunks, desc="generating views", total=len(chunks)):
        hi = min(lo + _CHUNK, n_views)
        users = view_user[lo:hi]
        cats = _choose_categories(
            rng, interests[users], interest_cdf[users], n_interests[users], cat_weight
        )
        drifted = rng.random(hi - lo) < config.interest_drift * (
            view_time[lo:hi] / span_ns
        )
        cats = np.where(drifted, (cats + 1) % n_cats, cats)
        view_item[lo:hi] = sampler.sample(rng, cats)

    user, item, kind, time, quantity = _funnels(
        rng, view_user, view_item, view_time, config, span_ns
    )
    price = np.round(
        item_price[item] * (1.0 + config.price_drift * (time / span_ns)), 2
    )

    # Ties on timestamp are broken by user; lexsort is stable, so the rest is fixed.
    order = np.lexsort((user, time))
    user, item, kind, time = user[order], item[order], kind[order], time[order]
    quantity, price = quantity[order], price[order]

    user_ids = _ids("U", config.users, 7)
    item_ids = _ids("I", config.items, 6)
    events = pd.DataFrame(
        {
            "user_id": _take_strings(user_ids, user),
            "item_id": _take_strings(item_ids, item),
            "event_type": _take_strings(pa.array(EVENT_TYPES, pa.string()), kind),
            "timestamp": start + time.astype("timedelta64[ns]"),
            "quantity": quantity,
            "price": price,
        }
    )

    titles, descriptions = _item_texts(rng, item_cat, vocab)
    items = pd.DataFrame(
        {
            "item_id": pd.array(item_ids, dtype="string"),
            "title": titles,
            "description": descriptions,
            "category": np.asarray(names, dtype=object)[item_cat],
            "price": item_price,
            "first_seen": start + _first_seen(view_item, view_time, config.items),
        }
    )
    country = rng.choice(
        len(COUNTRIES), size=config.users, p=np.asarray(COUNTRY_WEIGHTS)
    )
    users_frame = pd.DataFrame(
        {
            "user_id": pd.array(user_ids, dtype="string"),
            "country": np.asarray(COUNTRIES, dtype=object)[country],
            "first_seen": start + _first_seen(view_user, view_time, config.users),
        }
    )
    return ShopTables(
        events=conform(events, "events"),
        items=conform(items, "items"),
        users=conform(users_frame, "users"),
    )


def category_vocabulary(n_categories: int) -> tuple[list[str], list[tuple[str, ...]]]:
    """Name and word list of each category; the same for every seed.

    The first categories come from :data:`CATEGORY_VOCAB`; further ones get
    pronounceable pseudo-words, all distinct from each other and from the list.

    Args:
        n_categories: how many categories to describe.

    Returns:
        ``(names, words)``: ``names[c]`` and its ``WORDS_PER_CATEGORY`` words.
    """
    names = list(CATEGORY_VOCAB)[:n_categories]
    words = [CATEGORY_VOCAB[name] for name in names]
    extra = n_categories - len(names)
    if extra > 0:
        taken = set(CATEGORY_VOCAB) | {w for ws in CATEGORY_VOCAB.values() for w in ws}
        taken |= set(GENERIC_WORDS) | set(FILLER_WORDS)
        fresh = _pseudo_words(extra * (1 + WORDS_PER_CATEGORY), taken)
        block = np.asarray(fresh, dtype=object).reshape(extra, 1 + WORDS_PER_CATEGORY)
        names += [str(w) for w in block[:, 0]]
        words += [tuple(str(w) for w in row) for row in block[:, 1:]]
    return names, words


def _pseudo_words(count: int, taken: set[str]) -> list[str]:
    """``count`` distinct syllable words not in ``taken``, in a seed-free order.

    Fixed-size batches make the sequence independent of ``count``, so category
    ``c`` has the same name and words whatever the number of categories.
    """
    rng = np.random.default_rng(_VOCAB_SEED)
    onsets = np.asarray(_SYLLABLE_ONSETS, dtype=np.dtypes.StringDType())
    vowels = np.asarray(_SYLLABLE_VOWELS, dtype=np.dtypes.StringDType())
    batch = 4096
    syllables = 2
    found: list[str] = []
    seen = set(taken)
    while len(found) < count:
        word: np.ndarray = np.full(batch, "", dtype=np.dtypes.StringDType())
        for _ in range(syllables):
            word = np.strings.add(word, onsets[rng.integers(0, onsets.size, batch)])
            word = np.strings.add(word, vowels[rng.integers(0, vowels.size, batch)])
        # Keep first occurrences in draw order so the result is reproducible.
        _, first = np.unique(word, return_index=True)
        new = [w for w in word[np.sort(first)].tolist() if w not in seen]
        found += new
        seen.update(new)
        if len(new) < batch // 2:
            syllables += 1  # short words are running out
    return found[:count]


def _assign_categories(
    rng: np.random.Generator, n_items: int, cat_weight: np.ndarray
) -> np.ndarray:
    """Category of each item, every category non-empty, sizes ~ ``cat_weight``."""
    n_cats = cat_weight.size
    rest = rng.choice(n_cats, size=n_items - n_cats, p=cat_weight)
    return rng.permutation(np.concatenate([np.arange(n_cats), rest])).astype(np.int32)


class _ItemSampler:
    """Draws items inside given categories with Zipf popularity by in-category rank."""

    def __init__(
        self,
        rng: np.random.Generator,
        item_cat: np.ndarray,
        n_cats: int,
        exponent: float,
    ) -> None:
        # Shuffle first so that popularity rank is unrelated to the item id.
        perm = rng.permutation(item_cat.size)
        self.order = perm[np.argsort(item_cat[perm], kind="stable")].astype(np.int32)
        sorted_cat = item_cat[self.order]
        counts = np.bincount(sorted_cat, minlength=n_cats)
        self.end = np.cumsum(counts)
        self.begin = self.end - counts
        rank = np.arange(item_cat.size) - self.begin[sorted_cat] + 1
        weight = rank.astype(np.float64) ** -exponent
        within = np.cumsum(weight)
        before = np.concatenate([[0.0], within[self.end[:-1] - 1]])
        total = within[self.end - 1] - before
        # Category c occupies (c, c + 1]; one searchsorted then serves all categories.
        self.cdf = sorted_cat + (within - before[sorted_cat]) / total[sorted_cat]

    def sample(self, rng: np.random.Generator, cats: np.ndarray) -> np.ndarray:
        """One item index per entry of ``cats``."""
        pos = np.searchsorted(self.cdf, cats + rng.random(cats.size), side="right")
        # Rounding at a segment edge may step into a neighbour; pull it back.
        pos = np.clip(pos, self.begin[cats], self.end[cats] - 1)
        return self.order[pos]


def _views_per_user(rng: np.random.Generator, n_users: int, n_views: int) -> np.ndarray:
    """Heavy-tailed (lognormal) views per user; at least one each when possible."""
    activity = rng.lognormal(0.0, _ACTIVITY_SIGMA, n_users)
    activity /= activity.sum()
    floor = 1 if n_views >= n_users else 0
    return floor + rng.multinomial(n_views - floor * n_users, activity)


def _user_interests(
    rng: np.random.Generator,
    n_users: int,
    cat_weight: np.ndarray,
    mean_interests: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse Dirichlet-like interest mixture of each user.

    A user has ``1 + Poisson(mean_interests - 1)`` distinct categories (drawn by
    category appeal) with Dirichlet(1) weights over them; other slots weigh 0.

    Returns:
        ``(categories, cdf, count)``: (users, slots) category ids, the cumulative
        weights over slots, and the number of active slots per user.
    """
    n_cats = cat_weight.size
    slots = min(n_cats, max(1, math.ceil(2 * mean_interests) + 2))
    count = 1 + rng.poisson(max(mean_interests - 1.0, 0.0), n_users)
    count = np.minimum(count, slots)
    cats = np.empty((n_users, slots), dtype=np.int32)
    for j in range(slots):
        draw = rng.choice(n_cats, size=n_users, p=cat_weight)
        # Redraw repeats of earlier slots (successive sampling without replacement);
        # the rare repeats left after a few rounds just pool their weight.
        for _ in range(_REDRAW_ROUNDS):
            repeat = np.flatnonzero((cats[:, :j] == draw[:, None]).any(axis=1))
            if repeat.size == 0:
                break
            draw[repeat] = rng.choice(n_cats, size=repeat.size, p=cat_weight)
        cats[:, j] = draw
    weight = rng.gamma(1.0, size=(n_users, slots))
    weight[np.arange(slots)[None, :] >= count[:, None]] = 0.0
    cdf = np.cumsum(weight, axis=1)
    cdf /= cdf[:, -1:]
    return cats, cdf, count


def _choose_categories(
    rng: np.random.Generator,
    interests: np.ndarray,
    interest_cdf: np.ndarray,
    n_interests: np.ndarray,
    cat_weight: np.ndarray,
) -> np.ndarray:
    """One category per view: from the viewer's mixture, or exploring at random."""
    n = len(interests)
    draw = rng.random(n)
    slot = np.minimum((interest_cdf < draw[:, None]).sum(axis=1), n_interests - 1)
    cats = interests[np.arange(n), slot]
    explore = np.flatnonzero(rng.random(cats.size) < _EXPLORE_RATE)
    cats[explore] = rng.choice(cat_weight.size, size=explore.size, p=cat_weight)
    return cats


def _sample_times(
    rng: np.random.Generator, n: int, days: int, start: np.datetime64
) -> np.ndarray:
    """Nanosecond offsets from ``start`` with weekly and daily shopping rhythm."""
    # 1970-01-01 was a Thursday: shift so that 0 = Monday.
    first_weekday = (int(start.astype("datetime64[D]").astype(np.int64)) + 3) % 7
    day_weight = _WEEKDAY_WEIGHTS[(first_weekday + np.arange(days)) % 7]
    day = rng.choice(days, size=n, p=day_weight / day_weight.sum())
    hour = rng.choice(24, size=n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    within = rng.integers(0, _NS_PER_HOUR, size=n, dtype=np.int64)
    return (
        day.astype(np.int64) * _NS_PER_DAY
        + hour.astype(np.int64) * _NS_PER_HOUR
        + within
    )


def _funnels(
    rng: np.random.Generator,
    view_user: np.ndarray,
    view_item: np.ndarray,
    view_time: np.ndarray,
    config: SynthConfig,
    span_ns: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Add carts after some views and purchases after some carts.

    Returns:
        ``(user, item, kind, time, quantity)`` of all events, unsorted; ``kind``
        indexes :data:`EVENT_TYPES`.
    """
    carted = np.flatnonzero(rng.random(view_user.size) < config.cart_rate)
    cart_time = _later(rng, view_time[carted], _CART_DELAY_MEAN_S, span_ns)
    bought = np.flatnonzero(rng.random(carted.size) < config.purchase_rate)
    buy_time = _later(rng, cart_time[bought], _PURCHASE_DELAY_MEAN_S, span_ns)
    bought_view = carted[bought]
    n_views, n_carts, n_buys = view_user.size, carted.size, bought.size

    user = np.concatenate([view_user, view_user[carted], view_user[bought_view]])
    item = np.concatenate([view_item, view_item[carted], view_item[bought_view]])
    kind = np.repeat(np.arange(3, dtype=np.int8), [n_views, n_carts, n_buys])
    time = np.concatenate([view_time, cart_time, buy_time])
    quantity = np.ones(user.size, dtype=np.int64)
    quantity[n_views + n_carts :] = rng.geometric(_PURCHASE_QTY_P, n_buys)
    return user, item, kind, time, quantity


def _later(
    rng: np.random.Generator, time: np.ndarray, mean_s: float, span_ns: int
) -> np.ndarray:
    """A strictly later time (exponential delay) that stays inside the window."""
    delay = 1 + (rng.exponential(mean_s, time.size) * _NS_PER_S).astype(np.int64)
    # Halfway to the end keeps order (later than ``time``) and stays before the end.
    return np.minimum(time + delay, (time + span_ns) // 2)


def _first_seen(index: np.ndarray, time: np.ndarray, size: int) -> np.ndarray:
    """Earliest ``time`` per ``index`` as timedelta; 0 where an index never occurs."""
    first = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, index, time)
    first[first == np.iinfo(np.int64).max] = 0
    return first.astype("timedelta64[ns]")


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """``prefix`` + 1-based zero-padded numbers, wider only when ``n`` needs it."""
    digits = np.arange(1, n + 1).astype(np.dtypes.StringDType())
    padded = np.strings.zfill(digits, max(width, len(str(n))))
    return pa.array(np.strings.add(prefix, padded).astype(object), pa.string())


def _take_strings(
    values: pa.Array, index: np.ndarray
) -> pd.api.extensions.ExtensionArray:
    """``values[index]`` as a pandas string array, gathered in Arrow (no Python str)."""
    return pd.array(values.take(pa.array(index)), dtype="string")


def _item_texts(
    rng: np.random.Generator, item_cat: np.ndarray, vocab: list[tuple[str, ...]]
) -> tuple[np.ndarray, np.ndarray]:
    """Titles and descriptions drawn from each item's category words plus shared ones.

    Returns:
        ``(titles, descriptions)`` as object arrays of ``str``.
    """
    n = item_cat.size
    n_cats = len(vocab)
    words = np.asarray(
        [w for ws in vocab for w in ws] + list(GENERIC_WORDS) + list(FILLER_WORDS),
        dtype=np.dtypes.StringDType(),
    )
    generic0 = n_cats * WORDS_PER_CATEGORY
    filler0 = generic0 + len(GENERIC_WORDS)

    def draw(
        length_range: tuple[int, int], p_cat: float, p_generic: float
    ) -> np.ndarray:
        longest = length_range[1]
        length = rng.integers(length_range[0], longest + 1, n)
        own = item_cat[:, None] * WORDS_PER_CATEGORY + rng.integers(
            0, WORDS_PER_CATEGORY, (n, longest)
        )
        generic = generic0 + rng.integers(0, len(GENERIC_WORDS), (n, longest))
        filler = filler0 + rng.integers(0, len(FILLER_WORDS), (n, longest))
        u = rng.random((n, longest))
        index = np.where(
            u < p_cat, own, np.where(u < p_cat + p_generic, generic, filler)
        )
        text = words[index[:, 0]]
        for j in range(1, longest):
            text = np.where(
                j < length,
                np.strings.add(np.strings.add(text, " "), words[index[:, j]]),
                text,
            )
        return text

    titles = np.strings.capitalize(draw(_TITLE_WORDS, 0.7, 0.3))
    descriptions = draw(_DESCRIPTION_WORDS, 0.5, 0.25)
    return titles.astype(object), descriptions.astype(object)
