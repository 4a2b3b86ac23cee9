// A Dawn-like theme script: just enough of Online Store 2.0's variant picker, product form,
// quick add and cart drawer for the app embed to meet what it meets in a real store. Counts
// how often each of its own handlers ran in window.themeCalls (the browser test reads it).
"use strict";
window.themeCalls = { productFormSubmit: 0, quickAdd: 0, drawerChange: 0 };

class VariantSelects extends HTMLElement {
  connectedCallback() {
    this.addEventListener("change", (event) => {
      const id = event.target.dataset.variantId;
      if (!id) return;
      const input = document.querySelector("#product-form-main input[name='id']");
      input.value = id;
      input.dispatchEvent(new Event("change", { bubbles: true }));
      const variants = JSON.parse(this.querySelector("script[type='application/json']").textContent);
      const variant = variants.find((v) => String(v.id) === id);
      document.dispatchEvent(new CustomEvent("variant:change", { detail: { variant } }));
      history.replaceState({}, "", `?variant=${id}`);
    });
  }
}
customElements.define("variant-selects", VariantSelects);

class ProductForm extends HTMLElement {
  constructor() {
    super();
    this.form = this.querySelector("form");
    this.submitButton = this.querySelector("[type='submit']");
    this.form.addEventListener("submit", this.onSubmitHandler.bind(this));
  }

  onSubmitHandler(evt) {
    evt.preventDefault();
    if (this.submitButton.getAttribute("aria-disabled") === "true") return;
    window.themeCalls.productFormSubmit += 1;
    this.handleErrorMessage();
    this.submitButton.setAttribute("aria-disabled", true);
    const formData = new FormData(this.form);
    formData.append("sections", "cart-drawer,cart-icon-bubble");
    formData.append("sections_url", window.location.pathname);
    fetch(`${routes.cart_add_url}`, {
      method: "POST",
      headers: { "X-Requested-With": "XMLHttpRequest", Accept: "application/javascript" },
      body: formData,
    })
      .then((response) => response.json())
      .then((response) => {
        if (response.status) {
          this.handleErrorMessage(response.description);
          return;
        }
        document.querySelector("cart-drawer").refresh();
      })
      .catch((e) => console.error(e))
      .finally(() => this.submitButton.removeAttribute("aria-disabled"));
  }

  handleErrorMessage(message = false) {
    const wrapper = this.querySelector(".product-form__error-message-wrapper");
    wrapper.toggleAttribute("hidden", !message);
    if (message) wrapper.querySelector(".product-form__error-message").textContent = message;
  }
}
customElements.define("product-form", ProductForm);

class CartDrawer extends HTMLElement {
  async refresh() {
    const cart = await (await fetch("/cart.js")).json();
    const list = this.querySelector(".cart-items");
    list.innerHTML = "";
    cart.items.forEach((item, index) => {
      const li = document.createElement("li");
      li.className = "cart-item";
      li.dataset.sku = item.sku;
      li.innerHTML = `<span class="cart-item__title"></span>
        <span><button type="button" class="quantity__button" name="minus" aria-label="Diminuir">−</button>
        <span class="cart-item__quantity">${item.quantity}</span>
        <button type="button" class="quantity__button" name="plus" aria-label="Aumentar">+</button></span>`;
      li.querySelector(".cart-item__title").textContent = item.title;
      li.querySelectorAll("button").forEach((button) => {
        const next = item.quantity + (button.name === "plus" ? 1 : -1);
        button.addEventListener("click", () => this.change(index + 1, next));
      });
      list.appendChild(li);
    });
    this.hidden = false;
  }

  async change(line, quantity) {
    window.themeCalls.drawerChange += 1;
    const errors = this.querySelector(".cart-errors");
    errors.textContent = "";
    const response = await fetch("/cart/change.js", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ line, quantity }),
    });
    const state = await response.json();
    if (state.errors || state.status) {
      errors.textContent = state.errors || state.description;
      return;
    }
    await this.refresh();
  }
}
customElements.define("cart-drawer", CartDrawer);

document.addEventListener("click", async (event) => {
  const button = event.target.closest(".quick-add__submit");
  if (!button) return;
  window.themeCalls.quickAdd += 1;
  const card = button.closest(".card");
  const error = card.querySelector(".card__error");
  error.hidden = true;
  const response = await fetch("/cart/add.js", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ items: [{ id: Number(button.dataset.variantId), quantity: 1 }] }),
  });
  const body = await response.json();
  if (body.status) {
    error.textContent = body.description;
    error.hidden = false;
    return;
  }
  document.querySelector("cart-drawer").refresh();
});
