"""How each step of the walkthrough (engine/walkthrough.py) is told: its formula, the same formula
with the numbers of one unit or weight put in, and which unit or weight to pick by default.
Pure functions of a step (no Streamlit): the Inside backprop page draws what they return."""
import inspect

import numpy as np

ACTIVATION_FORMULAS = {
    "relu": (r"h_j = \max(0, z_j)", r"\operatorname{relu}'(h) = [h > 0]"),
    "leaky_relu": (r"h_j = \begin{cases} z_j & z_j > 0 \\ 0.01\, z_j & \text{otherwise} \end{cases}",
                   r"\operatorname{leaky}'(h) = 1 \text{ if } h > 0 \text{ else } 0.01"),
    "tanh": (r"h_j = \tanh z_j", r"\tanh'(h) = 1 - h^2"),
    "sigmoid": (r"h_j = \sigma(z_j) = \frac{1}{1 + e^{-z_j}}", r"\sigma'(h) = h\,(1 - h)"),
}


def n(value, bracket=False):
    """A number as LaTeX, short (in brackets when negative and `bracket`: a factor of a product)."""
    value = float(value)
    if bracket and value < 0:
        return rf"({n(value)})"
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.4f}"


def _output(step):
    """The array of the step's units (the one a unit index picks from)."""
    a, key = step.arrays, step.key
    if key == "forward-0-input":
        return a["x"][0]
    if key.startswith("update"):
        return np.abs(a["g"]).max(axis=0)
    if key.endswith("-gradients"):
        return np.abs(a["dW"]).max(axis=0)
    if key.endswith("-delta") and "carried" in a:
        return a["carried"][0]
    first = "a" if key.endswith("-dropout") else "h" if key.endswith("-activation") else "z"
    for name in (first, "h", "p", "delta"):
        if name in a:
            return a[name][0]
    return np.zeros(1)


def unit_count(step):
    """How many units (or, for weights, units they lead into) the step's numbers can be shown for."""
    return len(_output(step))


def default_unit(step):
    """The unit whose numbers say most: the largest value the step makes (the true class for the loss)."""
    if step.key == "forward-loss":
        return int(step.arrays["label"][0])
    return int(np.abs(_output(step)).argmax())


def weight_row(step, j):
    """For a step about weights W[k, j]: the input k whose weight into unit j says most."""
    arrays = step.arrays
    grid = arrays["g"] if "g" in arrays else arrays["dW"] if "dW" in arrays else arrays["W"]
    return int(np.abs(grid[:, j]).argmax())


def formulas(step, activation, j):
    """(the general formula, the same with the numbers of unit j put in) for a step, in LaTeX."""
    key, a = step.key, step.arrays
    if key == "forward-0-input":
        return r"x_i = \frac{\text{pixel}_i}{255}", rf"x_{{{j}}} = {n(a['x'][0, j])}"
    if key.endswith("-dense"):
        terms = a["a"][0] * a["W"][:, j]
        top = np.argsort(-np.abs(terms))[:3]
        shown = " + ".join(rf"{n(a['a'][0, k], True)} \cdot {n(a['W'][k, j], True)}" for k in top)
        rest = len(terms) - len(top)
        bias = rf" + {n(a['b'][j])}" if a["b"] is not None else ""
        more = rf" + \dots\ (\text{{{rest} more terms}})" if rest > 0 else ""
        general = r"z_j = \sum_k a_k W_{kj}" + (" + b_j" if a["b"] is not None else "")
        return general, rf"z_{{{j}}} = {shown}{more}{bias} = {n(a['z'][0, j])}"
    if key.endswith("-activation"):
        name = activation.replace("_", r"\_")
        return ACTIVATION_FORMULAS[activation][0], rf"h_{{{j}}} = \operatorname{{{name}}}({n(a['z'][0, j])}) = {n(a['h'][0, j])}"
    if key.endswith("-dropout"):
        return (r"a_j = h_j\, m_j,\quad m_j \in \{0, 1/p_{\text{keep}}\}",
                rf"a_{{{j}}} = {n(a['h'][0, j])} \cdot {n(a['mask'][0, j])} = {n(a['a'][0, j])}")
    if key == "forward-softmax":
        total = float(np.exp(a["z"][0] - a["z"][0].max()).sum())
        return (r"p_c = \frac{e^{z_c}}{\sum_{c'} e^{z_{c'}}}",
                rf"p_{{{j}}} = \frac{{e^{{{n(a['z'][0, j])}}}}}{{\sum e^{{z}}}} = "
                rf"\frac{{{n(np.exp(a['z'][0, j] - a['z'][0].max()))}}}{{{n(total)}}} = {n(a['p'][0, j])}"
                r"\quad(\text{shifted by } \max z \text{, which changes nothing})")
    if key == "forward-loss":
        label = int(a["label"][0])
        return r"L = -\log p_{y}", rf"L = -\log p_{{{label}}} = -\log {n(a['p'][0, label])} = {n(a['L'][0, 0])}"
    if key == "backward-output-delta":
        return (r"\delta_c = \frac{\partial L}{\partial z_c} = p_c - y_c",
                rf"\delta_{{{j}}} = {n(a['p'][0, j])} - {n(a['y'][0, j])} = {n(a['delta'][0, j])}")
    if key.endswith("-gradients"):
        k = weight_row(step, j)
        general = r"\frac{\partial L}{\partial W_{kj}} = a_k\, \delta_j,\qquad \frac{\partial L}{\partial b_j} = \delta_j"
        numbers = (rf"\frac{{\partial L}}{{\partial W_{{{k},{j}}}}} = {n(a['a'][0, k], True)} \cdot "
                   rf"{n(a['delta'][0, j], True)} = {n(a['dW'][k, j])}")
        if a["db"] is not None:
            numbers += rf",\qquad \frac{{\partial L}}{{\partial b_{{{j}}}}} = {n(a['db'][j])}"
        return general, numbers
    if key.endswith("-delta"):
        through = a["delta"][0] @ a["W"][j]
        mask = "" if a["mask"] is None else rf" \cdot {n(a['mask'][0, j])}"
        general = (r"\delta^{(l-1)}_k = \Big(\sum_j \delta_j W_{kj}\Big)" + (r" m_k" if a["mask"] is not None else "")
                   + r"\; \mathrm{act}'(h_k),\qquad " + ACTIVATION_FORMULAS[activation][1])
        return general, (rf"\delta_{{{j}}} = {n(through, True)}{mask} \cdot {n(a['slope'][0, j], True)} = "
                         rf"{n(a['carried'][0, j])}")
    if key.startswith("update"):
        k = weight_row(step, j)
        if "m" in a:
            general = (r"m \leftarrow \beta_1 m + (1-\beta_1)\, g,\quad v \leftarrow \beta_2 v + (1-\beta_2)\, g^2,"
                       r"\quad w \leftarrow w - \mathrm{lr}\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,"
                       r"\frac{m}{\sqrt{v} + \varepsilon}")
            numbers = (rf"g = {n(a['g'][k, j])},\ m = {n(a['m'][k, j])},\ v = {n(a['v'][k, j])}:\quad "
                       rf"W_{{{k},{j}}} = {n(a['w'][k, j])} \to {n(a['new w'][k, j])}")
        else:
            general = r"u \leftarrow \mu\, u - \mathrm{lr}\, g,\qquad w \leftarrow w + u"
            numbers = (rf"g = {n(a['g'][k, j])},\ u = {n(a['velocity'][k, j])}:\quad "
                       rf"W_{{{k},{j}}} = {n(a['w'][k, j])} \to {n(a['new w'][k, j])}")
        return general, numbers
    return "", ""


def source_of(step):
    """The source of the engine function that computes the step (read from the engine itself,
    so it never drifts from what runs)."""
    try:
        return inspect.getsource(step.function) if step.function is not None else ""
    except (OSError, TypeError):
        return ""
