"""The matching service's configuration and the names of its collections.

Shared by the worker's store (:mod:`services.matching.dependencies`) and the
operator's restore (:mod:`services.matching.restore`), which both write the
same collections with the same rules; neither imports the other's module for
them, so there is no import circle.
"""
from services.matching.scoring import Settings
from tacoord.config import setting

MATCHES, ALERTS, PROPOSALS = "matches", "alerts", "proposals"
VIEWS = {"needs": "needs_view", "offers": "offers_view", "experts": "experts_view",
         "workshops": "workshops_view"}

GAP_AFTER_KEY = "TACOORD_GAP_AFTER_SECONDS"
GAP_SWEEP_KEY = "TACOORD_GAP_SWEEP_SECONDS"
MAX_PER_NEED_KEY = "TACOORD_MATCH_MAX_PER_NEED"
SCAN_LIMIT_KEY = "TACOORD_MATCH_SCAN_LIMIT"
PRIORITY_WEIGHTS_KEY = "TACOORD_MATCH_PRIORITY_WEIGHTS"   # "1:1.0,2:0.6,3:0.3"
CHAPTER_WEIGHTS_KEY = "TACOORD_MATCH_CHAPTER_WEIGHTS"     # "2:1.0,4:1.0"
DEFAULT_CHAPTER_WEIGHT_KEY = "TACOORD_MATCH_DEFAULT_CHAPTER_WEIGHT"
REPLAY_URL_KEY = "TACOORD_MATCHING_REPLAY_URL"    # the audit service: restore an empty store from its feed at start
REPLAY_KEY_KEY = "TACOORD_MATCHING_REPLAY_KEY"    # an operator API key for that feed
STANDBY_REFRESH_KEY = "TACOORD_MATCHING_STANDBY_REFRESH_SECONDS"   # a standby instance reloads its model this often
STANDBY_REFRESH_SECONDS = 60.0


def _weights(value):
    if isinstance(value, dict):
        return {int(k): float(v) for k, v in value.items()}
    return {int(k): float(v) for k, v in (item.split(":") for item in str(value).split(",") if item)}


def settings_from(cfg):
    """The rules' :class:`~services.matching.scoring.Settings` from the container config
    (falling back to the environment)."""
    defaults = Settings()
    return Settings(
        gap_after_seconds=float(setting(cfg, GAP_AFTER_KEY, defaults.gap_after_seconds)),
        max_offer_matches_per_need=int(setting(cfg, MAX_PER_NEED_KEY, defaults.max_offer_matches_per_need)),
        scan_limit=int(setting(cfg, SCAN_LIMIT_KEY, defaults.scan_limit)),
        priority_weights=_weights(setting(cfg, PRIORITY_WEIGHTS_KEY, defaults.priority_weights)),
        chapter_weights=_weights(setting(cfg, CHAPTER_WEIGHTS_KEY, defaults.chapter_weights)),
        default_chapter_weight=float(setting(cfg, DEFAULT_CHAPTER_WEIGHT_KEY, defaults.default_chapter_weight)),
    )

