"""Site harmonization with ComBat, fitted on training sites, applied to new sites without labels.

:class:`ComBat` is the empirical-Bayes location/scale model of Johnson et al.
(2007) as adapted to neuroimaging by Fortin et al. (2017, 2018) and
implemented in their reference package neuroCombat: per feature, a linear
model of site intercepts and protected covariates (e.g. age, sex; never the
target), pooled residual variance, then per site an additive (``gamma``) and a
multiplicative (``delta``) effect shrunk towards their across-feature priors.

Only the training rows are used by ``fit``. A site that ``transform`` meets
for the first time (a test site in leave-one-site-out, or a new scanner at
prediction time) gets its own ``gamma`` and ``delta`` estimated from its own
features, standardized with the training sites' grand mean, pooled variance
and covariate weights, with the same empirical-Bayes step; its labels are
never used (they are not an input). This is the usual practice for new
scanners (e.g. neuroHarmonize's and ComBat-GAM's handling of a new batch,
Pomponio et al. 2020); it needs enough participants of that site at once.

Why msica has its own implementation: of the maintained packages,
neuroHarmonize pins ``numpy<2`` and ``pandas<3`` (incompatible with msica's
stack) and returns NaN for sites unseen at training; combatlearn raises on
unseen sites and pulls in plotting and UMAP dependencies; neuroCombat (the
reference) has not been released since 2021 and applies no model to new data.
The implementation here is tested against neuroCombat on the training data.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from pipeline._validation import check_in_allowed, check_int
from pipeline.exceptions import InputDataError

__all__ = ["AUTO_COMBAT", "HARMONIZE_OPTIONS", "HARMONIZERS", "ComBat", "describe_harmonize",
           "resolve_harmonize"]

LOGGER = logging.getLogger("msica.classify")

#: Site harmonization methods by name (``"none"`` leaves the features as they are).
HARMONIZERS = {
    "none": {"description": "no site harmonization", "references": {}},
    "combat": {
        "description": "ComBat (empirical-Bayes location and scale per site, protected "
                       "covariates kept) fitted on the training sites of each fold; a test site "
                       "unseen in training has its site effects estimated from its own "
                       "features, without labels",
        "references": {
            "johnson2007": "Johnson WE, Li C, Rabinovic A. Adjusting batch effects in "
                           "microarray expression data using empirical Bayes methods. "
                           "Biostatistics. 2007;8(1):118-127.",
            "fortin2018": "Fortin JP, Cullen N, Sheline YI, et al. Harmonization of cortical "
                          "thickness measurements across scanners and sites. NeuroImage. "
                          "2018;167:104-120.",
        },
    },
}

#: The rule of ``harmonize="auto"``: ComBat when the training rows hold at least
#: ``min_sites`` sites and every site has at least ``min_site_size`` participants, else none.
#: On ABIDE CC200 leave-one-site-out, ComBat raised pooled balanced accuracy / AUC (see
#: docs/defaults.md).
AUTO_COMBAT = {"min_sites": 2, "min_site_size": 20}

#: Values of the ``harmonize`` option: a method of :data:`HARMONIZERS`, or "auto".
HARMONIZE_OPTIONS = ("auto", *HARMONIZERS)


def resolve_harmonize(harmonize: str, sites) -> str:
    """The harmonization to run on these training rows: "auto" decided by :data:`AUTO_COMBAT`.

    Parameters
    ----------
    harmonize : {"auto", "none", "combat"}
    sites : array-like of shape (n_samples,) or None
        Site of each training row.

    Returns
    -------
    {"none", "combat"}
        ``harmonize`` itself unless it is "auto".

    Raises
    ------
    ValueError
        If ``harmonize`` is not one of :data:`HARMONIZE_OPTIONS`.

    Examples
    --------
    >>> resolve_harmonize("auto", ["a"] * 20 + ["b"] * 20)
    'combat'
    >>> resolve_harmonize("auto", ["a"] * 20 + ["b"] * 19)
    'none'
    """
    check_in_allowed("harmonize", harmonize, HARMONIZE_OPTIONS)
    if harmonize != "auto":
        return harmonize
    if sites is None:
        return "none"
    counts = np.unique(np.asarray(sites).astype(str), return_counts=True)[1]
    enough = len(counts) >= AUTO_COMBAT["min_sites"] and counts.min() >= AUTO_COMBAT["min_site_size"]
    return "combat" if enough else "none"


def describe_harmonize(harmonize: str) -> str:
    """Methods text of a ``harmonize`` option ("auto" states its rule)."""
    check_in_allowed("harmonize", harmonize, HARMONIZE_OPTIONS)
    if harmonize != "auto":
        return HARMONIZERS[harmonize]["description"]
    return (f"{HARMONIZERS['combat']['description']}, when the training set holds at least "
            f"{AUTO_COMBAT['min_sites']} sites of at least {AUTO_COMBAT['min_site_size']} "
            "participants each (otherwise no site harmonization)")


def _aprior(delta):
    m, s2 = delta.mean(axis=-1), delta.var(axis=-1, ddof=1)
    return (2 * s2 + m**2) / s2


def _bprior(delta):
    m, s2 = delta.mean(axis=-1), delta.var(axis=-1, ddof=1)
    return (m * s2 + m**3) / s2


def _empirical_bayes(s_site, conv=1e-4, max_iter=1000):
    """Shrunk ``gamma*``, ``delta*`` of one site from its standardized rows (neuroCombat's it_sol).

    Parameters
    ----------
    s_site : ndarray of shape (n_rows, n_features)

    Returns
    -------
    gamma_star, delta_star : ndarray of shape (n_features,)
    """
    n = s_site.shape[0]
    g_hat = s_site.mean(axis=0)
    d_hat = s_site.var(axis=0, ddof=1)
    d_hat[d_hat == 0] = 1.0
    g_bar, t2 = g_hat.mean(), g_hat.var(ddof=1)
    a, b = _aprior(d_hat), _bprior(d_hat)
    if not (np.isfinite(a) and np.isfinite(b) and t2 > 0):
        return g_hat, d_hat  # no spread across features to shrink towards: plain estimates
    g_old, d_old = g_hat, d_hat
    for _ in range(max_iter):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = ((s_site - g_new) ** 2).sum(axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(np.nanmax(np.abs(g_new - g_old) / np.abs(g_old)),
                         np.nanmax(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if not change > conv:
            break
    return g_old, d_old


def _independent_columns(design, n_fixed):
    """Indices of the columns after ``n_fixed`` that add rank (collinear ones dropped)."""
    keep = list(range(n_fixed))
    rank = np.linalg.matrix_rank(design[:, keep]) if keep else 0
    for j in range(n_fixed, design.shape[1]):
        if np.linalg.matrix_rank(design[:, [*keep, j]]) > rank:
            keep.append(j)
            rank += 1
    return np.asarray(keep[n_fixed:], dtype=int) - n_fixed


class ComBat(TransformerMixin, BaseEstimator):
    """ComBat site harmonization that applies to sites never seen in training.

    Parameters
    ----------
    n_covariates : int, default=0
        Leading columns of ``X`` that are covariates to protect (numeric, e.g.
        age and one-hot sex); their effects are kept, not attributed to site.
        They are dropped from the output. Never pass the target here.
    min_site_size : int, default=10
        Fewest rows a site needs in ``fit``, or in ``transform`` when it was not
        seen in training, to estimate its effects.
    empirical_bayes : bool, default=True
        Shrink site effects towards their across-feature priors (parametric EB).

    Attributes
    ----------
    sites_ : ndarray of shape (n_sites,)
        Training sites.
    grand_mean_ : ndarray of shape (n_features,)
        Sample-size weighted mean of the site intercepts.
    var_pooled_ : ndarray of shape (n_features,)
        Pooled residual variance.
    covariate_coef_ : ndarray of shape (n_kept_covariates, n_features)
        Weights of the protected covariates (collinear ones dropped).
    covariate_columns_ : ndarray of int
        Covariate columns kept (of the first ``n_covariates``).
    gamma_star_, delta_star_ : ndarray of shape (n_sites, n_features)
        Shrunk additive and multiplicative effects of the training sites.
    n_features_in_ : int

    Notes
    -----
    Pass the sites to ``fit`` and ``transform`` as ``sites``; when omitted,
    every row is taken to come from one site. A site in ``transform`` that is
    not in ``sites_`` is harmonized with effects estimated from its own rows
    (see the module docstring); :meth:`transform` logs which sites were.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> sites = np.repeat(["a", "b"], 30)
    >>> X = rng.randn(60, 20) + np.where(sites == "a", 2.0, -2.0)[:, None]
    >>> Z = ComBat().fit(X, sites=sites).transform(X, sites=sites)
    >>> bool(abs(Z[sites == "a"].mean() - Z[sites == "b"].mean()) < 0.2)
    True
    """

    def __init__(self, n_covariates=0, min_site_size=10, empirical_bayes=True):
        self.n_covariates = n_covariates
        self.min_site_size = min_site_size
        self.empirical_bayes = empirical_bayes

    def _split(self, X):
        return X[:, : self.n_covariates], X[:, self.n_covariates:]

    @staticmethod
    def _sites(sites, n):
        if sites is None:
            return np.full(n, "all", dtype=object)
        sites = np.asarray(sites).astype(str).astype(object)
        if sites.shape != (n,):
            raise ValueError(f"'sites' must have one entry per row ({n}). Got shape "
                             f"{sites.shape}.")
        return sites

    def _check_size(self, sites, where):
        names, counts = np.unique(sites, return_counts=True)
        small = {str(s): int(c) for s, c in zip(names, counts, strict=True)
                 if c < self.min_site_size}
        if small:
            raise InputDataError(
                f"ComBat needs at least {self.min_site_size} participants per site {where}; "
                f"got {small}. Score or train such sites together with more of their "
                "participants, or run without harmonization."
            )

    def fit(self, X, y=None, sites=None):
        """Learn site effects, pooled variance and covariate weights on these (training) rows."""
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        check_int("n_covariates", self.n_covariates, 0, X.shape[1] - 1, bound="n_columns - 1",
                  fix="At least one feature column must remain.")
        sites = self._sites(sites, X.shape[0])
        self._check_size(sites, "in training")
        C, F = self._split(X)
        self.sites_, codes, counts = np.unique(sites, return_inverse=True, return_counts=True)
        onehot = np.eye(len(self.sites_))[codes]
        self.covariate_columns_ = _independent_columns(np.hstack([onehot, C]), len(self.sites_))
        design = np.hstack([onehot, C[:, self.covariate_columns_]])
        coef = np.linalg.lstsq(design, F, rcond=None)[0]
        n_sites = len(self.sites_)
        self.grand_mean_ = (counts / len(codes)) @ coef[:n_sites]
        self.covariate_coef_ = coef[n_sites:]
        var = ((F - design @ coef) ** 2).mean(axis=0)
        var[var == 0] = np.median(var[var > 0]) if np.any(var > 0) else 1.0
        self.var_pooled_ = var
        s_data = self._standardize(C, F)
        self.gamma_star_ = np.empty((n_sites, F.shape[1]))
        self.delta_star_ = np.empty((n_sites, F.shape[1]))
        for k in range(n_sites):
            self.gamma_star_[k], self.delta_star_[k] = self._site_effects(s_data[codes == k])
        return self

    def _standardize(self, C, F):
        mean = self.grand_mean_ + C[:, self.covariate_columns_] @ self.covariate_coef_
        return (F - mean) / np.sqrt(self.var_pooled_)

    def _site_effects(self, s_site):
        if self.empirical_bayes:
            return _empirical_bayes(s_site)
        delta = s_site.var(axis=0, ddof=1)
        return s_site.mean(axis=0), np.where(delta > 0, delta, 1.0)

    def transform(self, X, sites=None):
        """Harmonized features (covariate columns dropped).

        Sites seen in training use their learned effects; other sites are
        estimated from their own rows here (no labels involved).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        sites = self._sites(sites, X.shape[0])
        C, F = self._split(X)
        s_data = self._standardize(C, F)
        out = np.empty_like(F)
        known = {s: k for k, s in enumerate(self.sites_)}
        new = sorted(set(sites) - set(known))
        if new:
            self._check_size(sites[np.isin(sites, new)], "unseen in training")
            LOGGER.info("ComBat: site(s) %s not seen in training; their effects are estimated "
                        "from their own features (no labels)", new)
        for site in np.unique(sites):
            rows = sites == site
            if site in known:
                gamma, delta = self.gamma_star_[known[site]], self.delta_star_[known[site]]
            else:
                gamma, delta = self._site_effects(s_data[rows])
            out[rows] = (s_data[rows] - gamma) / np.sqrt(delta)
        return out * np.sqrt(self.var_pooled_) + (
            self.grand_mean_ + C[:, self.covariate_columns_] @ self.covariate_coef_)

    def fit_transform(self, X, y=None, sites=None):
        """Fit on ``X`` and return it harmonized."""
        return self.fit(X, y, sites=sites).transform(X, sites=sites)

    def get_feature_names_out(self, input_features=None):
        """Names of the feature columns (covariate columns dropped)."""
        check_is_fitted(self)
        if input_features is None:
            input_features = [f"x{i}" for i in range(self.n_features_in_)]
        return np.asarray(input_features, dtype=object)[self.n_covariates:]
